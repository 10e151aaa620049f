"""The job history: ams_jobs_ended_total, its histograms and error codes, once per job, with and
without --storage.path.

Every test runs the real ``ams-exporter`` process against an emulator over HTTPS on 127.0.0.1. The
emulator's clock stands still (speed 0) and the test moves it between collections; what the
history must say comes from the emulator's jobs (``tests.support.history.Ledger``), never from the
exporter's output.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from ams_emulator import EmuJob, Emulator, JobState
from tests.support.expected import split_scope
from tests.support.harness import Scrape
from tests.support.history import (
    DURATION,
    ENDED,
    EXPORTER,
    FINAL_STATES,
    LAST_ENDED,
    OTHER,
    QUEUE_WAIT,
    ExporterRun,
    Groups,
    Ledger,
    assert_history,
    catch_up,
    ended_at,
    error_codes,
    start_exporter,
    step_over_start,
    write_config,
)
from tests.support.logs import read_log
from tests.support.process import run

ACCOUNT = "a"
DAY = 86400.0
# The emulator's clock starts this far behind the wall clock, so that jobs end (uncounted) between
# its start and the exporter's.
LEAD_SECONDS = 300.0
# A queue that grows slowly (about 9 of 10 arriving jobs per minute find a slot), a fifth failing.
BUSY: dict[str, Any] = {
    "slots": 20,
    "mean_task_seconds": 60.0,
    "arrivals_per_hour": 600.0,
    "failure_ratio": 0.2,
    "cancel_ratio": 0.1,
}
# About one and a half jobs ending per second: for the restart tests, whose emulator clock
# follows the wall clock (a downtime is real time there).
DENSE: dict[str, Any] = {**BUSY, "slots": 60, "tasks_max": 1, "arrivals_per_hour": 5400.0}


def behind(seconds: float) -> datetime:
    return datetime.fromtimestamp(time.time() - seconds, timezone.utc)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def busy_emulator(seed: int, jobs: int = 300, **scenario: Any) -> Emulator:
    return Emulator(
        jobs=jobs, seed=seed, speed=0, start=behind(LEAD_SECONDS), **{**BUSY, **scenario}
    )


def first_run(tmp_path: Path, emulator: Emulator, *flags: str, **settings: Any) -> ExporterRun:
    config = tmp_path / "config.yml"
    env = write_config(config, emulator, **settings)
    return start_exporter(tmp_path, "exporter", config, env, emulator, *flags)


def rounds(
    run: ExporterRun, emulator: Emulator, ledger: Ledger, count: int, seconds: float
) -> Scrape:
    """``count`` times: move the clock, collect, and check the whole history; the last scrape."""
    found = None
    for number in range(count):
        emulator.clock.advance(seconds)
        ledger.see(emulator.jobs())
        found = run.scrape()
        assert_history(found, ACCOUNT, ledger, f"after round {number + 1}")
    assert found is not None
    return found


def cancel_oldest_processing(emulator: Emulator) -> None:
    running = [job for job in emulator.jobs() if job.state == JobState.PROCESSING]
    emulator.set_job_state(min(running, key=lambda job: job.created).id, JobState.CANCELED)


def exported(found: Scrape) -> dict[str, str]:
    """``{job_id: group}`` from ams_job_info."""
    return {
        s.labels["job_id"]: s.labels["group"]
        for s in found.samples
        if s.name == "ams_job_info" and s.labels["account"] == ACCOUNT
    }


def log_entries(text: str, level: str) -> list[dict[str, object]]:
    return [entry for entry in read_log(text) if entry["level"] == level]


# ---------------------------------------------------------------------------------------------
# Counting once


def test_each_job_counts_once_over_many_collections(tmp_path):
    with busy_emulator(seed=1401) as emulator:
        emulator_start = emulator.clock.now().timestamp()
        with first_run(tmp_path, emulator) as run:
            ledger = Ledger(run.started[1])
            ledger.see(emulator.jobs())
            assert_history(run.first, ACCOUNT, ledger, "at the first collection")
            step_over_start(emulator, run.started)
            ledger.see(emulator.jobs())
            assert_history(run.scrape(), ACCOUNT, ledger, "once the clock passed the start")
            waiting = None
            for number in range(15):
                # The scenario's own cancels come late; an operator cancels a running job, and
                # one that waited in the queue (it never starts, RunningDuration 0).
                if waiting is not None:
                    emulator.set_job_state(waiting, JobState.CANCELED)
                    waiting = None
                elif number % 4 == 1:
                    cancel_oldest_processing(emulator)
                    waiting = emulator.add_job(name=f"waiting-{number}.mp4")
                rounds(run, emulator, ledger, 1, 60.0)
            assert run.stop() == 0
    counted = Counter(FINAL_STATES[job.state] for job in ledger.counted())
    assert set(counted) == set(FINAL_STATES.values()) and min(counted.values()) >= 3, counted
    missed = [
        job
        for job in ledger.seen.values()
        if job.state in FINAL_STATES and emulator_start < ended_at(job) < ledger.since
    ]
    assert missed, "no job ended between the emulator's start and the exporter's: nothing tested"
    assert len(ledger.waited()) >= 20


def test_a_job_created_and_ended_between_two_collections_is_counted(tmp_path):
    with busy_emulator(seed=1402, jobs=100, slots=50) as emulator:
        with first_run(tmp_path, emulator) as run:
            ledger = Ledger(run.started[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, run.started)
            ledger.see(emulator.jobs())
            assert_history(run.scrape(), ACCOUNT, ledger, "before the short jobs")
            before = set(ledger.seen)
            finished = emulator.add_job(name="flash-finished.mp4")
            emulator.set_job_state(finished, JobState.FINISHED)
            failed = emulator.add_job(name="flash-failed.mp4", tasks=2)
            emulator.set_job_state(failed, JobState.ERROR, error_code="TransientError")
            rounds(run, emulator, ledger, 1, 120.0)
            # Jobs the exporter never saw before they ended: created and ended within the round.
            flashes = {
                job.id
                for job in ledger.seen.values()
                if job.state in FINAL_STATES and job.id not in before
            }
            rounds(run, emulator, ledger, 2, 5.0)
    assert {finished, failed} < flashes, "the scenario's own short jobs ended within the round too"
    assert flashes <= {job.id for job in ledger.counted()}


# ---------------------------------------------------------------------------------------------
# Groups, max_jobs, error codes


GROUPS = Groups((("keynote", "keynote"), ("ingest", r"^ingest-")))


def test_groups_split_the_history_first_match_wins_and_ams_job_info_names_each_jobs_group(
    tmp_path,
):
    with busy_emulator(seed=1403) as emulator:
        with first_run(tmp_path, emulator, jobs={"groups": GROUPS.setting()}) as run:
            ledger = Ledger(run.started[1], GROUPS)
            ledger.see(emulator.jobs())
            # Every series is there, at zero, before anything is counted.
            assert_history(run.first, ACCOUNT, ledger, "at the first collection")
            assert not ledger.counted()
            step_over_start(emulator, run.started)
            both = emulator.add_job(name="ingest-2026-01-01-keynote-1080p.mp4")
            emulator.set_job_state(both, JobState.FINISHED)
            capitalised = emulator.add_job(name="Keynote-0001-720p")
            emulator.set_job_state(
                capitalised, JobState.ERROR, error_code="ErrorParsingConfiguration"
            )
            nameless = emulator.add_job(name=None)
            emulator.set_job_state(nameless, JobState.CANCELED)
            found = rounds(run, emulator, ledger, 6, 120.0)
            jobs = {job.id: job for job in emulator.jobs()}
    assert (GROUPS.of(jobs[both].name), GROUPS.of(jobs[capitalised].name)) == ("keynote", OTHER)
    by_group = Counter(GROUPS.of(job.name) for job in ledger.counted())
    assert min(by_group[group] for group in GROUPS.names) >= 3, by_group

    groups = exported(found)
    wrong = {
        job_id: (group, GROUPS.of(jobs[job_id].name))
        for job_id, group in groups.items()
        if group != GROUPS.of(jobs[job_id].name)
    }
    assert not wrong, f"ams_job_info group, expected group: {wrong}"
    inside, outside = split_scope(jobs.values(), time.time(), DAY)
    assert {job.id for job in inside} <= set(groups)
    assert not {job.id for job in outside} & set(groups)

    # The latest end per group and state of the jobs the collections saw final (in scope then);
    # a job at the edge of finished_window may or may not have been listed.
    inside, outside = split_scope(ledger.seen.values(), time.time(), DAY)
    edge = [job for job in ledger.seen.values() if job not in inside and job not in outside]
    for group in GROUPS.names:
        for state, label in FINAL_STATES.items():

            def ends(jobs: list[EmuJob], state: int = state, group: str = group) -> list[float]:
                return [
                    ended_at(job)
                    for job in jobs
                    if job.state == state and GROUPS.of(job.name) == group
                ]

            sure, unsure = ends(inside), ends(edge)
            candidates = {max(sure) if sure else None}
            if unsure:
                candidates.add(max(sure + unsure))
            values = found.values(LAST_ENDED, account=ACCOUNT, group=group, state=label)
            value = values[0] if values else None
            assert any(
                value == c if c is None or value is None else math.isclose(value, c, abs_tol=1e-3)
                for c in candidates
            ), (group, label, value, candidates)


def test_max_jobs_limits_the_series_not_the_counting(tmp_path):
    with busy_emulator(seed=1404) as emulator:
        with first_run(tmp_path, emulator, jobs={"max_jobs": 5}) as run:
            ledger = Ledger(run.started[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, run.started)
            found = rounds(run, emulator, ledger, 6, 120.0)
    assert len(exported(found)) == 5
    assert found.value("ams_jobs_dropped", account=ACCOUNT) > 0
    assert len(ledger.counted()) > 5 * 4


def test_error_codes_count_once_per_job_and_code_beyond_max_jobs(tmp_path):
    with busy_emulator(seed=1405, failure_ratio=0.4) as emulator:
        with first_run(tmp_path, emulator, jobs={"max_jobs": 5}) as run:
            ledger = Ledger(run.started[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, run.started)
            found = rounds(run, emulator, ledger, 8, 120.0)
    failed = [job for job in ledger.counted() if job.state == JobState.ERROR]
    codes = Counter(code for job in failed for code in error_codes(job))
    assert len(failed) >= 10 and len(codes) >= 4, codes
    assert all(error_codes(job) for job in failed), "every failed job has a code"
    shown = exported(found)
    assert not [job.id for job in failed if job.id in shown], "failed jobs are beyond max_jobs"


# ---------------------------------------------------------------------------------------------
# Restarts


def dense_emulator(seed: int) -> Emulator:
    return Emulator(jobs=200, seed=seed, speed=0, start=behind(90.0), **DENSE)


def follow_the_wall(run: ExporterRun, emulator: Emulator, ledger: Ledger, count: int) -> None:
    """``count`` collections, the emulator's clock set to the wall clock before each."""
    for number in range(count):
        catch_up(emulator)
        ledger.see(emulator.jobs())
        assert_history(run.scrape(), ACCOUNT, ledger, f"at collection {number + 1}")


def test_without_storage_a_restart_counts_only_what_ends_after_it(tmp_path):
    config = tmp_path / "config.yml"
    with dense_emulator(seed=1406) as emulator:
        env = write_config(config, emulator)
        with start_exporter(tmp_path, "first", config, env, emulator) as first:
            ledger = Ledger(first.started[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, first.started)
            during = emulator.add_job(name="ended-in-the-first-run.mp4", state=JobState.FINISHED)
            follow_the_wall(first, emulator, ledger, 3)
            assert first.stop() == 0
        catch_up(emulator)
        down = emulator.add_job(name="ended-while-down.mp4", state=JobState.FINISHED)
        with start_exporter(tmp_path, "second", config, env, emulator) as second:
            again = Ledger(second.started[1])
            again.see(emulator.jobs())
            assert_history(second.first, ACCOUNT, again, "at the second start")
            step_over_start(emulator, second.started)
            emulator.add_job(name="ended-in-the-second-run.mp4", state=JobState.FINISHED)
            follow_the_wall(second, emulator, again, 3)
            assert second.stop() == 0
    first_counted = {job.id for job in ledger.counted()}
    assert during in first_counted
    ended_while_down = [
        job.id
        for job in again.seen.values()
        if job.state in FINAL_STATES
        and job.id not in first_counted
        and ledger.since <= ended_at(job) < again.since
    ]
    assert down in ended_while_down
    assert len(again.counted()) >= 1


def test_with_storage_the_jobs_that_ended_while_it_was_down_count_once(tmp_path):
    config, storage = tmp_path / "config.yml", tmp_path / "storage"
    flag = f"--storage.path={storage}"
    with dense_emulator(seed=1407) as emulator:
        env = write_config(config, emulator)
        with start_exporter(tmp_path, "first", config, env, emulator, flag) as first:
            ledger = Ledger(first.started[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, first.started)
            during = emulator.add_job(name="ended-in-the-first-run.mp4", state=JobState.FINISHED)
            follow_the_wall(first, emulator, ledger, 3)
            assert first.stop() == 0
        (stored,) = storage.iterdir()  # one account, one file, no temporary left behind
        assert stored.name.startswith("history-") and stored.suffix == ".json"
        assert json.loads(stored.read_text(encoding="utf-8"))["account"] == ACCOUNT

        catch_up(emulator)
        finished = emulator.add_job(name="finished-while-down.mp4", state=JobState.FINISHED)
        failed = emulator.add_job(name="failed-while-down.mp4")
        emulator.set_job_state(failed, JobState.ERROR, error_code="ErrorUploadingOutputAsset")
        catch_up(emulator)
        with start_exporter(tmp_path, "second", config, env, emulator, flag) as second:
            again = ledger.resumed()
            again.see(emulator.jobs())
            assert_history(second.first, ACCOUNT, again, "at the second start")
            follow_the_wall(second, emulator, again, 3)
            assert second.stop() == 0
    assert {finished, failed} <= {job.id for job in again.counted()}
    # Counted by the first run, still listed by the second: not counted again.
    assert during in {job.id for job in ledger.counted()}
    assert during in again.seen and during not in {job.id for job in again.counted()}
    log = second.log()
    assert f"account {ACCOUNT}: history resumed" in log
    assert "beyond finished_window" not in log


def test_a_downtime_beyond_finished_window_is_logged_with_what_is_not_counted(tmp_path):
    """With finished_window 1ms, a job that ended while the exporter was down is out of reach of
    its next listing: the warning names the interval; a job still in reach counts once."""
    config, storage = tmp_path / "config.yml", tmp_path / "storage"
    flag = f"--storage.path={storage}"
    with Emulator(jobs=20, seed=1408, speed=0, arrivals_per_hour=0) as emulator:
        env = write_config(config, emulator, jobs={"finished_window": "1ms"})
        with start_exporter(tmp_path, "first", config, env, emulator, flag) as first:
            # Jobs that end ahead of the wall clock are in reach of a 1ms window.
            emulator.add_job(
                name="ahead-1.mp4", state=JobState.FINISHED, end_time=at(time.time() + 300)
            )
            assert first.scrape().value(ENDED, account=ACCOUNT, group=OTHER, state="Finished") == 1
            seen_final = {job.id for job in emulator.jobs() if job.state in FINAL_STATES}
            assert first.stop() == 0
        lost = emulator.add_job(
            name="lost.mp4", state=JobState.FINISHED, end_time=at(first.started[1] + 0.001)
        )
        kept = emulator.add_job(
            name="ahead-2.mp4", state=JobState.FINISHED, end_time=at(time.time() + 300)
        )
        with start_exporter(tmp_path, "second", config, env, emulator, flag) as second:
            found = second.first
            assert second.stop() == 0
            jobs = emulator.jobs()
    in_reach = [
        job.id
        for job in jobs
        if job.state in FINAL_STATES and ended_at(job) > time.time() and job.id not in seen_final
    ]
    assert in_reach == [kept]
    assert found.value(ENDED, account=ACCOUNT, group=OTHER, state="Finished") == len(in_reach)
    prefix = f"account {ACCOUNT}: jobs that ended between "
    (warning,) = [
        str(entry["msg"])
        for entry in log_entries(second.log(), "WARN")
        if str(entry["msg"]).startswith(prefix)
    ]
    since, _, reach = warning[len(prefix) :].split(" ")[:3]
    assert "are beyond finished_window (1ms) and are not counted" in warning, warning
    end = ended_at(next(job for job in jobs if job.id == lost))
    # The interval is written to the second: [since, reach + 1s) holds the lost job's end.
    assert iso_seconds(since) <= end < iso_seconds(reach) + 1, (warning, end)
    # From the first run's start (the stored floor) to the second's minus finished_window.
    assert math.floor(first.started[0]) <= iso_seconds(since) <= first.started[1], warning
    assert math.floor(second.started[0] - 0.001) <= iso_seconds(reach) <= second.started[1]


def iso_seconds(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


# ---------------------------------------------------------------------------------------------
# Storage files that cannot be used, and storage paths that cannot be used


def unusable_files(own: dict[str, Any], other: bytes, secret: str) -> dict[str, bytes]:
    """What an account's history file may hold instead of its history, by account name; ``own``
    is the account's real file, ``other`` another account's."""

    def edited(**changes: Any) -> bytes:
        return json.dumps({**own, **changes}).encode()

    text = json.dumps(own).encode()
    return {
        "not-json": b"history: [1, 2",
        "binary": bytes(range(256)),
        "empty": b"",
        "truncated": text[: len(text) // 2],
        "foreign": json.dumps({"dashboard": {"title": "AMS"}, "version": 1}).encode(),
        "later-version": edited(version=2),
        "other-account": other,
        "secret-as-account": edited(account=secret),
        "secret-as-version": edited(version=secret),
        "far-ahead": edited(end_floor=time.time() + 30 * DAY),
        "ids-not-an-object": edited(ended=[]),
        "json-object": b"{}",
        "json-array": b"[]",
        "json-string": b'"ams-exporter-history"',
        "json-integer": b"42",
        "json-float": b"1.5e3",
        "json-true": b"true",
        "json-false": b"false",
        "json-null": b"null",
    }


VARIANTS = tuple(unusable_files({}, b"", "").keys())
INTACT = "intact"


def test_unusable_history_files_are_set_aside_with_a_warning_and_counting_starts_afresh(tmp_path):
    config, storage = tmp_path / "config.yml", tmp_path / "storage"
    flag = f"--storage.path={storage}"
    accounts = (*VARIANTS, INTACT)
    with busy_emulator(seed=1409, jobs=60, slots=3) as emulator:
        env = write_config(config, emulator, accounts)
        with start_exporter(tmp_path, "first", config, env, emulator, flag) as first:
            ledger = Ledger(first.started[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, first.started)
            emulator.add_job(name="counted-by-every-account.mp4", state=JobState.FINISHED)
            ledger.see(emulator.jobs())
            assert_history(first.scrape(), INTACT, ledger, "in the first run")
            assert first.stop() == 0
        files = {}
        for path in storage.iterdir():
            files[json.loads(path.read_text(encoding="utf-8"))["account"]] = path
        assert set(files) == set(accounts)
        originals = {name: path.read_bytes() for name, path in files.items()}
        planted = {
            name: unusable_files(
                json.loads(originals[name]), originals["empty"], emulator.client_secret
            )[name]
            for name in VARIANTS
        }
        for name, content in planted.items():
            files[name].write_bytes(content)

        catch_up(emulator)
        between = emulator.add_job(name="ended-between-the-runs.mp4", state=JobState.FINISHED)
        with start_exporter(tmp_path, "second", config, env, emulator, flag) as second:
            fresh = Ledger(second.started[1])
            resumed = ledger.resumed()
            for one in (fresh, resumed):
                one.see(emulator.jobs())
            step_over_start(emulator, second.started)
            emulator.add_job(name="counted-afresh.mp4", state=JobState.FINISHED)
            for one in (fresh, resumed):
                one.see(emulator.jobs())
            found = second.scrape()
            for name in VARIANTS:
                assert found.value("ams_up", account=name) == 1, name
                assert_history(found, name, fresh, "after its file was set aside")
            assert_history(found, INTACT, resumed, "resumed from its file")
            assert second.child.returncode is None
            assert second.stop() == 0
    assert between in {job.id for job in resumed.counted()}
    assert between not in {job.id for job in fresh.counted()}

    log = second.log()
    assert emulator.client_secret not in log
    warnings = [str(entry["msg"]) for entry in log_entries(log, "WARN")]
    for name in VARIANTS:
        path = files[name]
        (warning,) = [w for w in warnings if w.startswith(f"account {name}: ")]
        assert f"the history file {path} cannot be used" in warning, warning
        assert f"renamed to {path.name}.unreadable" in warning, warning
        assert path.with_name(path.name + ".unreadable").read_bytes() == planted[name], name
    assert not [w for w in warnings if w.startswith(f"account {INTACT}: ")]
    assert f"account {INTACT}: history resumed" in log
    assert not files[INTACT].with_name(files[INTACT].name + ".unreadable").exists()


def refused_storage(tmp_path: Path, path: Path) -> str:
    """The ``err`` of the one ERROR line of a start with ``--storage.path`` ``path``; exit 2."""
    with Emulator(jobs=5, seed=1410, speed=0) as emulator:
        config = tmp_path / "config.yml"
        env = write_config(config, emulator)
        result = run([*EXPORTER, f"--config.file={config}", f"--storage.path={path}"], env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr
    (entry,) = log_entries(result.stderr, "ERROR")
    assert entry["msg"] == "cannot use --storage.path", entry
    return str(entry["err"])


def test_a_storage_path_that_is_a_regular_file_exits_2(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("not a directory\n")
    assert refused_storage(tmp_path, plain) == f"{plain} is not a directory"
    assert plain.read_text() == "not a directory\n"


def test_a_storage_path_under_a_regular_file_exits_2(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("")
    err = refused_storage(tmp_path, plain / "history")
    assert str(plain / "history") in err and "Not a directory" in err, err


def test_a_storage_directory_it_cannot_write_in_exits_2(tmp_path):
    # procfs takes no new files, whoever asks: a chmod would not stop root, who runs CI.
    unwritable = Path("/proc/self")
    err = refused_storage(tmp_path, unwritable)
    assert err.startswith(f"cannot write in {unwritable}: "), err


# ---------------------------------------------------------------------------------------------
# Replicas


def test_two_exporters_on_one_account_count_the_same(tmp_path):
    config = tmp_path / "config.yml"
    with busy_emulator(seed=1411) as emulator:
        env = write_config(config, emulator)
        with (
            start_exporter(tmp_path, "replica-1", config, env, emulator) as one,
            start_exporter(tmp_path, "replica-2", config, env, emulator) as two,
        ):
            both = (one.started[0], two.started[1])
            ledger = Ledger(both[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, both)
            for number in range(5):
                emulator.clock.advance(120.0)
                ledger.see(emulator.jobs())
                found = [one.scrape(), two.scrape()]
                for scrape in found:
                    assert_history(scrape, ACCOUNT, ledger, f"after round {number + 1}")
                assert counts(found[0]) == counts(found[1])
    assert len(ledger.counted()) >= 20


def counts(found: Scrape) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    names = {ENDED, f"{DURATION}_count", f"{QUEUE_WAIT}_count"}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for s in found.samples if s.name in names
    }


# ---------------------------------------------------------------------------------------------
# Reloads


def reload(run: ExporterRun) -> None:
    response = requests.post(run.url + "/-/reload", timeout=60)
    assert response.status_code == 200, response.text


def test_a_reload_keeps_counting_restarts_changed_groups_at_zero_and_drops_removed_accounts(
    tmp_path,
):
    config = tmp_path / "config.yml"
    with dense_emulator(seed=1420) as emulator:
        env = write_config(config, emulator, accounts=(ACCOUNT, "b"))
        with start_exporter(
            tmp_path, "exporter", config, env, emulator, "--web.enable-lifecycle"
        ) as run:
            ledger = Ledger(run.started[1])
            ledger.see(emulator.jobs())
            step_over_start(emulator, run.started)
            # Ended before the reload by the wall clock, which a history started afresh at the
            # reload would not count.
            before = [
                emulator.add_job(name=f"before-the-reload-{n}.mp4", state=JobState.FINISHED)
                for n in range(3)
            ]
            follow_the_wall(run, emulator, ledger, 2)
            # Another finished_window makes a changed account with the same groups: its poller is
            # new, its counters go on. Account b is removed, and its series with it.
            write_config(config, emulator, jobs={"finished_window": "2d"})
            reload(run)
            follow_the_wall(run, emulator, ledger, 2)
            found = run.scrape()
            assert not [s for s in found.samples if s.labels.get("account") == "b"]
            assert set(before) <= {job.id for job in ledger.counted()}
            # New groups restart the account's counters at zero; what was counted stays counted.
            groups = Groups((("ingest", "^ingest-"), ("encode", "^Encode ")))
            write_config(
                config, emulator, jobs={"finished_window": "2d", "groups": groups.setting()}
            )
            reload(run)
            regrouped = replace(ledger.resumed(), groups=groups)
            regrouped.see(emulator.jobs())
            assert_history(run.scrape(), ACCOUNT, regrouped, "right after the groups changed")
            assert regrouped.counted() == []
            after = emulator.add_job(name="ingest-after-the-reload.mp4", state=JobState.FINISHED)
            follow_the_wall(run, emulator, regrouped, 2)
            assert after in {job.id for job in regrouped.counted()}
            assert run.stop() == 0
