"""The process's life as operators of Prometheus exporters expect it: reloads, signals, endpoints.

Every test runs the real ``ams-exporter`` process against emulators over HTTPS on loopback; what an
account did is read from the emulators' request logs, not from the exporter.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator, Fault, exporter_config
from exporter.ams.http import RequestCounter
from tests.support.harness import running_exporter
from tests.support.process import Child, poll

EXPORTER = [sys.executable, "-m", "exporter", "--web.listen-address=127.0.0.1:0"]
RELOAD_OK = "ams_exporter_config_last_reload_successful"
RELOAD_TIME = "ams_exporter_config_last_reload_success_timestamp_seconds"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Emulator]]:
    with (
        Emulator(jobs=12, seed=41, speed=0) as a,
        Emulator(jobs=12, seed=42, speed=0) as b,
        Emulator(jobs=12, seed=43, speed=0) as c,
    ):
        yield {"a": a, "b": b, "c": c}


def write_config(file: Path, emulators: Mapping[str, Emulator], **accounts: dict[str, Any]) -> None:
    """A config with the named accounts (each with extra settings) pointing at their emulators."""
    entries = [
        emulators[name].account_entry(
            name, secret_variable=f"SECRET_{name.upper()}", **{"timeout": "10s", **settings}
        )
        for name, settings in accounts.items()
    ]
    file.write_text(exporter_config(*entries))


def secrets_env(emulators: Mapping[str, Emulator]) -> dict[str, str]:
    return {
        **os.environ,
        **{f"SECRET_{name.upper()}": emu.client_secret for name, emu in emulators.items()},
    }


def samples(url: str, **kwargs: Any) -> Samples:
    response = requests.get(url, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return parsed(response.text)


def parsed(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scraped_when(url: str, holds: Callable[[Samples], bool]) -> Samples | None:
    """The samples of a scrape of ``url``'s metrics if ``holds`` says so, else ``None``."""
    found = samples(url + "/metrics")
    return found if holds(found) else None


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def accounts_in(found: Samples) -> set[str]:
    return {dict(labels)["account"] for _, labels in found if "account" in dict(labels)}


def start(tmp_path: Path, config: Path, env: dict[str, str], *flags: str) -> tuple[Child, str]:
    child = Child([*EXPORTER, f"--config.file={config}", *flags], tmp_path, "exporter", env=env)
    host, port = child.listening_address()
    return child, f"http://{host}:{port}"


def test_sighup_keeps_unchanged_accounts_rebuilds_changed_adds_and_removes(tmp_path, emulators):
    config = tmp_path / "config.yml"
    write_config(config, emulators, a={}, b={})
    child, url = start(tmp_path, config, secrets_env(emulators))
    with child:
        first = samples(url + "/metrics")
        assert value(first, "ams_up", account="a") == value(first, "ams_up", account="b") == 1
        assert value(first, RELOAD_OK) == 1
        tokens = {name: emu.request_count(api="aad") for name, emu in emulators.items()}

        write_config(config, emulators, a={}, b={"jobs": {"max_jobs": 3}}, c={})
        child.signal(signal.SIGHUP)
        reloaded = child.wait_until(
            lambda: scraped_when(url, lambda found: "c" in accounts_in(found)),
            what="account c after SIGHUP",
        )
        assert value(reloaded, "ams_up", account="c") == 1
        assert value(reloaded, "ams_jobs_dropped", account="b") > 0, "b runs its new max_jobs"
        assert value(reloaded, RELOAD_OK) == 1
        assert value(reloaded, RELOAD_TIME) > value(first, RELOAD_TIME)
        assert emulators["a"].request_count(api="aad") == tokens["a"], "a kept its token cache"
        assert emulators["b"].request_count(api="aad") > tokens["b"], "b was built anew"

        write_config(config, emulators, a={}, c={})
        child.signal(signal.SIGHUP)
        child.wait_until(
            lambda: accounts_in(samples(url + "/metrics")) == {"a", "c"},
            what="account b's series gone after SIGHUP",
        )
        assert child.returncode is None
    log = child.output("stderr")
    assert "configuration reloaded" in log
    assert "Traceback" not in log and "failed" not in log, "a replaced poller ends quietly"


def test_an_invalid_file_is_logged_and_the_running_configuration_stays(tmp_path, emulators):
    config = tmp_path / "config.yml"
    write_config(config, emulators, a={})
    child, url = start(tmp_path, config, secrets_env(emulators))
    with child:
        before = samples(url + "/metrics")
        config.write_text("accounts:\n  - name: a\n    endpoint: http://insecure.example/api/\n")
        child.signal(signal.SIGHUP)
        after = child.wait_until(
            lambda: scraped_when(url, lambda found: value(found, RELOAD_OK) == 0),
            what="the failed reload in the metrics",
        )
        assert value(after, "ams_up", account="a") == 1
        assert value(after, RELOAD_TIME) == value(before, RELOAD_TIME)
        assert child.returncode is None
    log = child.output("stderr")
    assert "reloading the configuration failed" in log and "accounts[0].endpoint" in log


def test_post_reload_needs_the_lifecycle_flag(tmp_path, emulators):
    config = tmp_path / "config.yml"
    write_config(config, emulators, a={})
    child, url = start(tmp_path, config, secrets_env(emulators))
    with child:
        refused = requests.post(url + "/-/reload", timeout=30)
        assert (refused.status_code, refused.text) == (403, "Lifecycle API is not enabled.\n")


def test_post_reload_with_the_lifecycle_flag(tmp_path, emulators):
    config = tmp_path / "config.yml"
    write_config(config, emulators, a={})
    child, url = start(tmp_path, config, secrets_env(emulators), "--web.enable-lifecycle")
    with child:
        assert requests.get(url + "/-/reload", timeout=30).status_code == 405
        write_config(config, emulators, a={}, c={})
        done = requests.post(url + "/-/reload", timeout=30)
        assert done.status_code == 200
        assert accounts_in(samples(url + "/metrics")) == {"a", "c"}
        config.write_text("accounts: [\n")
        failed = requests.put(url + "/-/reload", timeout=30)
        assert failed.status_code == 500 and "failed to reload config" in failed.text
        assert value(samples(url + "/metrics"), RELOAD_OK) == 0


def test_sighup_reads_the_web_config_again(tmp_path, emulators):
    def web_config(password: str) -> None:
        digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        web.write_text(f"basic_auth_users:\n  prometheus: '{digest}'\n")

    config, web = tmp_path / "config.yml", tmp_path / "web.yml"
    write_config(config, emulators, a={})
    web_config("old password")
    env = secrets_env(emulators)
    child, url = start(tmp_path, config, env, f"--web.config.file={web}")
    with child:
        metrics = url + "/metrics"
        assert requests.get(metrics, auth=("prometheus", "old password"), timeout=30).ok
        web_config("new password")
        child.signal(signal.SIGHUP)
        child.wait_until(
            lambda: requests.get(metrics, auth=("prometheus", "new password"), timeout=30).ok,
            what="the new password accepted",
        )
        old = requests.get(metrics, auth=("prometheus", "old password"), timeout=30)
        assert old.status_code == 401


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_demo_leaves_no_files_on_any_way_out(tmp_path, stop):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    child = Child([*EXPORTER, "--demo", "--demo.jobs=5"], tmp_path, "demo", env=env)
    with child:
        host, port = child.listening_address()
        assert list(temp.glob("ams-emulator-*")), "the demo keeps its certificates in TMPDIR"
        child.signal(signal.SIGHUP)
        child.wait_for("nothing to reload", stream="stderr")
        url = f"http://{host}:{port}"
        assert requests.get(url + "/-/healthy", timeout=30).text == "ok\n"
        poll(
            lambda: requests.get(url + "/-/ready", timeout=30).status_code == 200,
            timeout=30,
            what="/-/ready after the warm-up collection",
        )
        child.signal(stop)
        assert child.wait() == 0
    assert list(temp.iterdir()) == [], "the emulator's folder (private keys) is gone"


def test_the_status_page_adds_no_upstream_load(emulators):
    emulator = emulators["a"]
    with running_exporter({"a": emulator}) as exporter:
        assert exporter.scrape().value("ams_up", account="a") == 1
        after_scrape = emulator.request_count()
        pages = [exporter.get("/") for _ in range(2)]
        assert emulator.request_count() == after_scrape, "the pages showed the scrape's collection"
    for page in pages:
        assert page.status_code == 200 and " ago)" in page.text


def test_sigterm_lets_the_scrape_in_flight_finish_and_exits_0(tmp_path, emulators):
    emulator = emulators["c"]
    config = tmp_path / "config.yml"
    write_config(config, {"c": emulator}, c={})
    child, url = start(tmp_path, config, secrets_env(emulators))
    with child:
        assert value(samples(url + "/metrics"), "ams_up", account="c") == 1
        quiet_upstream(emulator)  # the start-up collection is over: the next listing is ours
        emulator.clear_log()
        emulator.faults.add(Fault(kind="latency", latency=1.5, path="/Jobs"))
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                scrape = pool.submit(requests.get, url + "/metrics", timeout=30)
                poll(
                    lambda: emulator.request_count(path=r"/Jobs") > 0,
                    timeout=30,
                    what="the scrape's collection under way",
                )
                child.signal(signal.SIGTERM)
                answer = scrape.result(timeout=60)
            assert answer.status_code == 200
            assert value(parsed(answer.text), "ams_up", account="c") == 1
            assert child.wait() == 0
        finally:
            emulator.faults.clear()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/metrics", timeout=5)


def quiet_upstream(emulator: Emulator, calm: int = 5) -> None:
    """Bounded wait until ``emulator`` has seen no request for ``calm`` polls in a row."""
    seen, still = -1, 0

    def settled() -> bool:
        nonlocal seen, still
        count = emulator.request_count()
        still = still + 1 if count == seen else 0
        seen = count
        return still >= calm

    poll(settled, timeout=30, interval=0.1, what="the upstream to be quiet")


def test_requests_of_a_removed_account_are_not_counted_any_more():
    """A collection of a removed account still under way must not bring its series back."""
    counter = RequestCounter()
    counter.add("a", "ams", "200")
    counter.add("b", "ams", "200")
    counter.count_only(["a"])
    counter.add("b", "aad", "200")  # the removed account's collection, finishing late
    counter.add("a", "ams", "200")
    assert counter.snapshot() == {("a", "ams", "200"): 2}
