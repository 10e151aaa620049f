"""``python -m bench.scrape``: the exporter's scrape against a straight-line baseline.

For each account size and each added latency, in one run: an emulator in its own process, the
exporter in its own process, and the baseline client (:mod:`bench.baseline`) in this one. Baseline
collections and exporter scrapes alternate, so that both see the same machine load. Then one
collection is rendered in this process alone (:mod:`bench.render`). The results go to a JSON file and,
as tables, to the marked section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from bench import profile, report
from bench.baseline import PAGE_SIZE, BaselineClient, BaselineRun
from bench.processes import (
    EmulatorInfo,
    cpu_seconds,
    peak_rss_bytes,
    start_emulator,
    start_exporter,
    wait_ready,
)
from bench.render import collect_once, count_series, time_rendering
from tests.support.process import Child

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"
DEFAULT_DOC = ROOT / "docs" / "performance.md"
# Scrapes under py-spy: at least the minimum, more until the time has passed, never beyond the max.
PROFILED_SCRAPES_MIN = 3
PROFILED_SCRAPES_MAX = 50
PROFILE_SECONDS = 5.0
_REQUESTS_LINE = re.compile(rb'^ams_api_requests_total\{[^}]*api="ams"[^}]*\} (\S+)$', re.MULTILINE)


@dataclass(frozen=True)
class ScrapeRun:
    """One ``/metrics`` request to the exporter process."""

    wall_seconds: float
    headers_seconds: float
    cpu_seconds: float
    requests_total: int
    body_bytes: int
    series: int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__)
    parser.add_argument(
        "--sizes",
        type=_int_list,
        default=[1000, 10_000, 100_000],
        help="jobs in the emulated account, comma separated (default 1000,10000,100000)",
    )
    parser.add_argument(
        "--latencies",
        type=_int_list,
        default=[0, 20],
        help="milliseconds added by the emulator to every AMS answer (default 0,20)",
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="measured scrapes per configuration (default 7)"
    )
    parser.add_argument("--seed", type=int, default=1, help="emulator scenario seed (default 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="the exporter's account timeout and the scrape timeout, seconds (default 120)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON result file")
    parser.add_argument(
        "--doc", type=Path, default=DEFAULT_DOC, help="Markdown file whose table is rewritten"
    )
    parser.add_argument("--no-doc", action="store_true", help="leave the Markdown file alone")
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the py-spy profile of extra scrapes without latency (skipped anyway without "
        "py-spy)",
    )
    return parser


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if not values or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= 0: {text!r}")
    return values


def scrape(session: requests.Session, url: str, pid: int, timeout: float) -> ScrapeRun:
    """One scrape in the text format, uncompressed, with the exporter process's CPU time.

    ``headers_seconds`` is the time to the response's headers: the exporter sends them with the
    body, once collected and rendered; the rest of ``wall_seconds`` is the transfer.
    """
    headers = {
        "Accept": "text/plain;version=0.0.4",
        "Accept-Encoding": "identity",
        "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}",
    }
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    response = session.get(url + "/metrics", headers=headers, timeout=timeout + 5, stream=True)
    first = time.perf_counter() - wall
    body = response.content
    wall, cpu = time.perf_counter() - wall, cpu_seconds(pid) - cpu
    response.raise_for_status()
    if b'\nams_up{account="bench"} 1.0\n' not in body:
        raise RuntimeError("the exporter's collection failed (ams_up is not 1)")
    counted = sum(int(float(value)) for value in _REQUESTS_LINE.findall(body))
    return ScrapeRun(wall, first, cpu, counted, len(body), count_series(body))


def measure(jobs: int, latency_ms: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One configuration: baseline collections and exporter scrapes, alternating."""
    print(f"-- {jobs} jobs, {latency_ms} ms latency: starting the emulator", flush=True)
    emulator, info = start_emulator(workdir, jobs, latency_ms / 1000.0, args.seed)
    try:
        result = _measure_with(info, jobs, latency_ms, args, workdir)
        if latency_ms == 0:
            result["render"] = _render(info, args)
        return result
    finally:
        emulator.stop()


def _measure_with(
    info: EmulatorInfo, jobs: int, latency_ms: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    exporter, url = start_exporter(workdir, info, args.timeout)
    session = requests.Session()
    session.trust_env = False
    baseline = BaselineClient(info)
    try:
        wait_ready(exporter, session, url, args.timeout)
        warm = scrape(session, url, exporter.pid, args.timeout)
        baselines: list[BaselineRun] = []
        scrapes: list[ScrapeRun] = []
        for _ in range(max(1, args.repeat)):
            baselines.append(baseline.collect())
            scrapes.append(scrape(session, url, exporter.pid, args.timeout))
        result = _summary(
            jobs=jobs,
            latency_ms=latency_ms,
            warm=warm,
            baselines=baselines,
            scrapes=scrapes,
            exporter=exporter,
        )
        executable = None if args.no_profile or latency_ms else profile.py_spy()
        if executable is not None:
            profiler = profile.Profiler(executable, exporter.pid, workdir / f"py-spy-{jobs}.txt")
            until = time.monotonic() + PROFILE_SECONDS
            for done in range(PROFILED_SCRAPES_MAX):
                if done >= PROFILED_SCRAPES_MIN and time.monotonic() > until:
                    break
                scrape(session, url, exporter.pid, args.timeout)
            result["profile"] = profiler.stop()
        return result
    finally:
        baseline.close()
        session.close()
        exporter.stop()


def _summary(
    *,
    jobs: int,
    latency_ms: int,
    warm: ScrapeRun,
    baselines: list[BaselineRun],
    scrapes: list[ScrapeRun],
    exporter: Child,
) -> dict[str, Any]:
    totals = [warm.requests_total] + [run.requests_total for run in scrapes]
    per_scrape = [after - before for before, after in itertools.pairwise(totals)]
    steady = statistics.median(per_scrape)
    listed = baselines[-1].jobs
    expected = listed // PAGE_SIZE + 1 + baselines[-1].task_requests
    base_wall = statistics.median(run.wall_seconds for run in baselines)
    base_cpu = statistics.fmean(run.cpu_seconds for run in baselines)
    exp_wall = statistics.median(run.wall_seconds for run in scrapes)
    exp_cpu = statistics.fmean(run.cpu_seconds for run in scrapes)
    return {
        "jobs": jobs,
        "latency_ms": latency_ms,
        "in_scope_jobs": listed,
        "expected_requests": expected,
        "expected_requests_issue_formula": math.ceil(listed / PAGE_SIZE)
        + baselines[-1].task_requests,
        "baseline": {
            "wall_seconds": base_wall,
            "cpu_seconds": base_cpu,
            "wall_seconds_min": min(run.wall_seconds for run in baselines),
            "pages_wall_seconds": statistics.median(run.pages_wall_seconds for run in baselines),
            "requests": baselines[-1].requests,
            "runs": [asdict(run) for run in baselines],
        },
        "exporter": {
            "wall_seconds": exp_wall,
            "wall_seconds_min": min(run.wall_seconds for run in scrapes),
            "headers_seconds": statistics.median(run.headers_seconds for run in scrapes),
            "cpu_seconds": exp_cpu,
            "requests_per_scrape": steady,
            "requests_per_scrape_all": per_scrape,
            "first_collection_requests": warm.requests_total - per_scrape[0],
            "peak_rss_bytes": peak_rss_bytes(exporter.pid),
            "exposition_bytes": scrapes[-1].body_bytes,
            "series": scrapes[-1].series,
            "runs": [asdict(run) for run in scrapes],
        },
        "wall_ratio": exp_wall / base_wall,
        "cpu_ratio": exp_cpu / base_cpu if base_cpu > 0 else None,
    }


def _render(info: EmulatorInfo, args: argparse.Namespace) -> dict[str, Any]:
    collection, counter = collect_once(info, args.timeout)
    run = time_rendering(collection, counter, max(3, args.repeat))
    return {**asdict(run), "microseconds_per_series": run.microseconds_per_series}


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Every configuration, then the derived memory slope; the whole result document."""
    started = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="ams-bench-") as scratch:
        results = [
            measure(jobs, latency, args, Path(scratch))
            for jobs in args.sizes
            for latency in args.latencies
        ]
    return {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": report.machine(),
        "repeat": args.repeat,
        "results": results,
        "memory": report.memory_slope(results),
        "targets": report.targets(results),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables, write the JSON and (unless --no-doc) the docs."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    document = run(args, " ".join(["python -m bench.scrape", *arguments]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    tables = report.tables(document)
    print(tables)
    if not args.no_doc:
        report.rewrite_doc(args.doc, tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
