"""A bounded soak: a real exporter process, the living scenario, faults injected periodically.

Two accounts run against emulators whose clocks run 60 times faster than real time (jobs arrive,
progress, fail, get deleted). The exporter is scraped every half second; every few scrapes one of
the fault kinds hits the account ``flaky`` for a few scrapes, then clears. After a warm-up, the
exporter's resident memory, open file descriptors and threads must stay flat, every scrape must be
answered with ``ams_up`` 1 for ``steady``, and nothing may be logged at warning level or above
except the one warning of each injected episode.

``tests/test_soak.py`` runs it for ``SHORT_SECONDS``; ``bench/soak.py --minutes N`` runs the long
one and prints the same figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator, Fault
from tests.support.harness import account_yaml
from tests.support.process import Child

REPO = Path(__file__).resolve().parents[2]
SHORT_SECONDS = 30.0
SCRAPE_INTERVAL = 0.5
SCRAPE_TIMEOUT = 3.0
EPISODE_SCRAPES = 3  # scrapes during which a fault is active
CALM_SCRAPES = 5  # scrapes between episodes
MB = 1024 * 1024


def _expire_and(fault: Fault) -> Callable[[Emulator], None]:
    def inject(emulator: Emulator) -> None:
        emulator.faults.add(fault)
        emulator.expire_tokens()

    return inject


def _add(fault: Fault) -> Callable[[Emulator], None]:
    def inject(emulator: Emulator) -> None:
        emulator.faults.add(fault)

    return inject


# The periodic faults, in turn. Each makes the collections of ``flaky`` fail while it is active.
EPISODES: tuple[tuple[str, Callable[[Emulator], None]], ...] = (
    ("503 busy", _add(Fault("status", status=503))),
    ("connection reset", _add(Fault("reset"))),
    ("malformed JSON", _add(Fault("malformed_json"))),
    ("latency beyond the deadline", _add(Fault("latency", latency=8.0))),
    ("Azure AD down", _expire_and(Fault("aad_down"))),
    ("429 Retry-After", _add(Fault("status", status=429, retry_after=1))),
    ("truncated body", _add(Fault("truncated"))),
    ("403", _add(Fault("status", status=403))),
)


@dataclass
class Sample:
    at: float  # seconds since the start
    rss: int  # bytes
    fds: int
    threads: int


@dataclass
class SoakReport:
    """What a soak observed; ``problems`` lists everything that was not as it should be."""

    seconds: float = 0.0
    scrapes: int = 0
    episodes: int = 0
    upstream_requests: int = 0
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def third(self, index: int) -> list[Sample]:
        """The middle (1) or last (2) third of the samples; the first third is the warm-up."""
        size = len(self.samples) // 3
        return self.samples[index * size : (index + 1) * size if index < 2 else None]

    def figures(self) -> dict[str, object]:
        mid, last = self.third(1), self.third(2)
        return {
            "duration_seconds": round(self.seconds, 1),
            "scrapes": self.scrapes,
            "fault_episodes": self.episodes,
            "upstream_requests": self.upstream_requests,
            "rss_mb_after_warmup_max": round(max(s.rss for s in mid) / MB, 1),
            "rss_mb_last_third_max": round(max(s.rss for s in last) / MB, 1),
            "rss_mb_last_third_median": round(statistics.median(s.rss for s in last) / MB, 1),
            "fds_after_warmup_max": max(s.fds for s in mid),
            "fds_last_third_max": max(s.fds for s in last),
            "threads_after_warmup_max": max(s.threads for s in mid),
            "threads_last_third_max": max(s.threads for s in last),
            "problems": len(self.problems),
        }

    def check_flat(self) -> None:
        """Memory, descriptors and threads of the last third within those after the warm-up."""
        mid, last = self.third(1), self.third(2)
        rss_mid, rss_last = max(s.rss for s in mid), statistics.median(s.rss for s in last)
        if rss_last > rss_mid + max(4 * MB, rss_mid // 20):
            self.problems.append(f"memory grew: {rss_mid / MB:.1f} MB -> {rss_last / MB:.1f} MB")
        for name in ("fds", "threads"):
            before = max(getattr(s, name) for s in mid)
            after = max(getattr(s, name) for s in last)
            if after > before + 2:
                self.problems.append(f"{name} grew: {before} -> {after}")


def _process_sample(pid: int, started: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(time.monotonic() - started, rss, fds, threads)


@contextlib.contextmanager
def _exporter(config: str, folder: Path, env: dict[str, str]) -> Iterator[tuple[Child, str]]:
    """A real exporter logging JSON to ``exporter.err`` in ``folder``; yields it and its URL."""
    config_file = folder / "config.yml"
    config_file.write_text(config)
    argv = [
        *(sys.executable, "-m", "exporter", f"--config.file={config_file}"),
        *("--web.listen-address=127.0.0.1:0", "--log.format=json"),
    ]
    with Child(argv, folder, "exporter", env={**os.environ, **env}, cwd=REPO) as exporter:
        host, port = exporter.listening_address(timeout=30)
        yield exporter, f"http://{host}:{port}/metrics"


def _ups(text: str) -> tuple[dict[str, float], float]:
    """``ams_up`` by account and the total of ``ams_api_requests_total``."""
    up: dict[str, float] = {}
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ams_up":
                up[sample.labels["account"]] = sample.value
            elif sample.name == "ams_api_requests_total":
                total += sample.value
    return up, total


def _log_problems(log_file: Path, episodes: int) -> list[str]:
    """Warnings and errors other than one 'collection of account flaky failed' per episode."""
    problems, flaky_warnings = [], 0
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append(f"log line that is not JSON: {line[:200]}")
            continue
        if entry["level"] not in ("WARN", "ERROR"):
            continue
        if entry["msg"].startswith("collection of account flaky failed"):
            flaky_warnings += 1
        else:
            problems.append(f"unexpected {entry['level']}: {entry['msg'][:300]}")
    if flaky_warnings != episodes:
        problems.append(f"{flaky_warnings} warnings for account flaky, {episodes} episodes")
    return problems


def run_soak(seconds: float, progress: Callable[[str], None] | None = None) -> SoakReport:
    """Soak an exporter for ``seconds``; the report holds the figures and any problem seen."""
    report = SoakReport()
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        steady = stack.enter_context(Emulator(jobs=400, seed=51, speed=60.0))
        flaky = stack.enter_context(Emulator(jobs=400, seed=52, speed=60.0))
        config = "accounts:\n" + "".join(
            account_yaml(name, emulator, secret_var=f"SOAK_{name.upper()}", timeout="5s")
            for name, emulator in (("steady", steady), ("flaky", flaky))
        )
        secrets = {"SOAK_STEADY": steady.client_secret, "SOAK_FLAKY": flaky.client_secret}
        exporter, url = stack.enter_context(_exporter(config, folder, secrets))
        session = stack.enter_context(requests.Session())
        started = time.monotonic()
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)}
        while time.monotonic() - started < seconds:
            cycle = report.scrapes % (EPISODE_SCRAPES + CALM_SCRAPES)
            if cycle == CALM_SCRAPES:
                name, inject = EPISODES[report.episodes % len(EPISODES)]
                inject(flaky)
                report.episodes += 1
                if progress:
                    progress(f"{time.monotonic() - started:6.1f} s: {name}")
            in_episode = cycle >= CALM_SCRAPES
            _scrape_once(session, url, headers, in_episode, report)
            if cycle == CALM_SCRAPES + EPISODE_SCRAPES - 1:
                flaky.faults.clear()
            report.samples.append(_process_sample(exporter.pid, started))
            time.sleep(SCRAPE_INTERVAL)
        report.seconds = time.monotonic() - started
        flaky.faults.clear()
        final = session.get(url, headers=headers, timeout=SCRAPE_TIMEOUT)
        report.upstream_requests = int(_ups(final.text)[1])
        exporter.stop()
        report.problems += _log_problems(exporter.stderr_path, report.episodes)
    report.check_flat()
    return report


def _scrape_once(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    in_episode: bool,
    report: SoakReport,
) -> None:
    report.scrapes += 1
    try:
        response = session.get(url, headers=headers, timeout=SCRAPE_TIMEOUT)
    except requests.RequestException as exc:
        report.problems.append(f"scrape {report.scrapes}: {type(exc).__name__}")
        return
    if response.status_code != 200:
        report.problems.append(f"scrape {report.scrapes}: HTTP {response.status_code}")
        return
    up, _ = _ups(response.text)
    expected = {"steady": 1.0, "flaky": 0.0 if in_episode else 1.0}
    if up != expected:
        report.problems.append(f"scrape {report.scrapes}: ams_up {up}, expected {expected}")
