"""``python -m bench.scrape``: the exporter's scrape against a straight-line baseline and a naive peer.

For each account size and each added latency, in one run: an emulator in its own process, the
exporter in its own process, the naive peer (:mod:`bench.naive`, a plain prometheus_client
exporter) in its own process, and the baseline client (:mod:`bench.baseline`) in this one. The
exporter's first scrape is sent the moment it listens, so that it shares the start-up collection
(a full listing); the later scrapes are its steady state, with and without gzip. Baseline
collections, exporter scrapes and naive scrapes alternate, so that all see the same machine load.
Then one collection is rendered in this process alone (:mod:`bench.render`). The results go to a
JSON file and, as tables, to the marked section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
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
    start_naive,
    wait_ready,
)
from bench.render import collect_once, count_series, time_rendering
from tests.support.process import Child

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"
QUICK_OUTPUT = ROOT / "bench" / "results" / "quick.json"  # untracked: see .gitignore
DEFAULT_DOC = ROOT / "docs" / "performance.md"
# Scrapes under py-spy: at least the minimum, more until the time has passed, never beyond the max.
PROFILED_SCRAPES_MIN = 3
PROFILED_SCRAPES_MAX = 50
PROFILE_SECONDS = 5.0
# Read by a first collection besides jobs and tasks: EncodingReservedUnitTypes, MediaProcessors.
CAPACITY_READS = 2
EXPORTER_REQUESTS = re.compile(
    rb'^ams_api_requests_total\{[^}]*api="ams"[^}]*\} (\S+)$', re.MULTILINE
)
NAIVE_REQUESTS = re.compile(rb"^naive_ams_requests_total\{[^}]*\} (\S+)$", re.MULTILINE)
COLLECTION_DURATION = re.compile(
    rb'^ams_collection_duration_seconds\{account="bench"\} (\S+)$', re.MULTILINE
)
_UP = b'\nams_up{account="bench"} 1.0\n'


@dataclass(frozen=True)
class ScrapeRun:
    """One ``/metrics`` request to the exporter's or the naive peer's process."""

    wall_seconds: float
    headers_seconds: float
    cpu_seconds: float
    requests_total: int
    wire_bytes: int  # as sent: compressed when gzip was asked for
    body_bytes: int
    series: int
    gzip: bool
    # The exporter's own ams_collection_duration_seconds: the upstream part of the wall time.
    collection_seconds: float | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__)
    parser.add_argument(
        "--sizes",
        type=_int_list,
        default=[1000, 10_000, 50_000, 100_000],
        help="jobs in the emulated account, comma separated (default 1000,10000,50000,100000; "
        f"sizes above {max(report.TARGET_SIZES):,} are stress rows, judged by no target)",
    )
    parser.add_argument(
        "--latencies",
        type=_int_list,
        default=[0, 20],
        help="milliseconds added by the emulator to every AMS answer (default 0,20)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=7,
        help="measured steady-state scrapes per configuration, each with and without gzip, and "
        "baseline collections (default 7)",
    )
    parser.add_argument(
        "--naive-repeat",
        type=int,
        default=3,
        help="measured scrapes of the naive peer per configuration (default 3; 0: not run)",
    )
    parser.add_argument(
        "--naive-max-jobs",
        type=int,
        default=50_000,
        help="largest account the naive peer is run against (default 50000; larger: not run)",
    )
    parser.add_argument("--seed", type=int, default=1, help="emulator scenario seed (default 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="the exporter's account timeout and the scrape timeout, seconds (default 120)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON result file (default bench/results/latest.json, which is tracked; with "
        "--no-doc bench/results/quick.json, which git ignores)",
    )
    parser.add_argument(
        "--doc", type=Path, default=DEFAULT_DOC, help="Markdown file whose table is rewritten"
    )
    parser.add_argument(
        "--no-doc",
        action="store_true",
        help="leave the Markdown file and bench/results/latest.json alone (unless --output "
        "names it): a quick look",
    )
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


def output_path(args: argparse.Namespace) -> Path:
    """Where the JSON goes: ``--output``, else the tracked result, or the quick one with --no-doc."""
    if args.output is not None:
        return Path(args.output)
    return QUICK_OUTPUT if args.no_doc else DEFAULT_OUTPUT


def scrape(
    session: requests.Session,
    url: str,
    pid: int,
    timeout: float,
    *,
    compressed: bool = False,
    counted: re.Pattern[bytes] = EXPORTER_REQUESTS,
) -> ScrapeRun:
    """One scrape in the text format, uncompressed or gzip-coded, with the process's CPU time.

    ``headers_seconds`` is the time to the response's headers: both servers send them with the
    body, once collected and rendered; the rest of ``wall_seconds`` is the transfer. ``counted``
    finds the upstream requests the process reports having made so far.
    """
    headers = {
        "Accept": "text/plain;version=0.0.4",
        "Accept-Encoding": "gzip" if compressed else "identity",
        "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}",
    }
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    response = session.get(url + "/metrics", headers=headers, timeout=timeout + 5, stream=True)
    first = time.perf_counter() - wall
    wire = response.raw.read(decode_content=False)
    wall, cpu = time.perf_counter() - wall, cpu_seconds(pid) - cpu
    response.raise_for_status()
    coded = response.headers.get("Content-Encoding", "identity") == "gzip"
    if coded != compressed:
        raise RuntimeError(f"asked for {headers['Accept-Encoding']}, got {coded=}")
    body = gzip.decompress(wire) if coded else wire
    if _UP not in body:
        raise RuntimeError(f"the collection of {url} failed (ams_up is not 1)")
    total = sum(int(float(value)) for value in counted.findall(body))
    collection = COLLECTION_DURATION.search(body)
    return ScrapeRun(
        wall,
        first,
        cpu,
        total,
        len(wire),
        len(body),
        count_series(body),
        compressed,
        None if collection is None else float(collection.group(1)),
    )


def measure(jobs: int, latency_ms: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One configuration: baseline collections, exporter and naive scrapes, alternating."""
    print(f"-- {jobs} jobs, {latency_ms} ms latency: starting the emulator", flush=True)
    emulator, info = start_emulator(workdir, jobs, latency_ms / 1000.0, args.seed)
    try:
        result = _measure_with(info, jobs, latency_ms, args, workdir)
        if latency_ms == 0:
            result["render"] = _render(info, args)
        return result
    finally:
        emulator.stop()


def spread(count: int, rounds: int) -> set[int]:
    """``count`` of the rounds ``0 .. rounds - 1``, evenly apart (all of them when equal)."""
    return {int((index + 0.5) * rounds / count) for index in range(count)} if count else set()


def _measure_with(
    info: EmulatorInfo, jobs: int, latency_ms: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    naive_repeat = args.naive_repeat if jobs <= args.naive_max_jobs else 0
    session = requests.Session()
    session.trust_env = False
    baseline = BaselineClient(info)
    children: list[Child] = []
    try:
        # The naive peer starts first: its interpreter's start-up must not overlap the
        # exporter's first collection.
        naive: tuple[Child, str] | None = None
        if naive_repeat:
            naive = start_naive(workdir, info, args.timeout)
            children.append(naive[0])
        exporter, url = start_exporter(workdir, info, args.timeout)
        children.append(exporter)
        load_start = os.getloadavg()
        first = scrape(session, url, exporter.pid, args.timeout)
        wait_ready(exporter, session, url, args.timeout)
        rounds = max(args.repeat, naive_repeat, 1)
        baseline_rounds = spread(max(1, args.repeat), rounds)
        naive_rounds = spread(naive_repeat, rounds)
        baselines: list[BaselineRun] = []
        scrapes: list[ScrapeRun] = []  # the exporter's, in the order they were made
        naive_runs: list[ScrapeRun] = []
        for index in range(rounds):
            if index in baseline_rounds:
                baselines.append(baseline.collect())
                scrapes.append(scrape(session, url, exporter.pid, args.timeout))
                scrapes.append(scrape(session, url, exporter.pid, args.timeout, compressed=True))
            if naive is not None and index in naive_rounds:
                naive_runs.append(
                    scrape(session, naive[1], naive[0].pid, args.timeout, counted=NAIVE_REQUESTS)
                )
        load_end = os.getloadavg()
        result = _summary(
            jobs=jobs,
            latency_ms=latency_ms,
            first=first,
            baselines=baselines,
            scrapes=scrapes,
            exporter=exporter,
        )
        result["naive"] = None if naive is None else _naive_summary(naive_runs, naive[0])
        result["naive_wall_ratio"], result["naive_cpu_ratio"] = _naive_ratios(result)
        result["load_average"] = {"start": list(load_start), "end": list(load_end)}
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
        for child in reversed(children):
            child.stop()


def _summary(
    *,
    jobs: int,
    latency_ms: int,
    first: ScrapeRun,
    baselines: list[BaselineRun],
    scrapes: list[ScrapeRun],
    exporter: Child,
) -> dict[str, Any]:
    totals = [first.requests_total] + [run.requests_total for run in scrapes]
    per_scrape = [after - before for before, after in itertools.pairwise(totals)]
    identity = [run for run in scrapes if not run.gzip]
    coded = [run for run in scrapes if run.gzip]
    listed = baselines[-1].jobs
    # The first collection is compared with the listing nearest to it in time: jobs leave the
    # finished window as the run goes on.
    near = baselines[0]
    base_wall = statistics.median(run.wall_seconds for run in baselines)
    base_cpu = statistics.fmean(run.cpu_seconds for run in baselines)
    exp_wall = statistics.median(run.wall_seconds for run in identity)
    exp_cpu = statistics.fmean(run.cpu_seconds for run in identity)
    steady_requests = statistics.median(per_scrape)
    return {
        "jobs": jobs,
        "latency_ms": latency_ms,
        "stress": report.is_stress(jobs),
        "in_scope_jobs": listed,
        "expected_requests": listed // PAGE_SIZE + 1 + baselines[-1].task_requests,
        "expected_first_requests": near.jobs // PAGE_SIZE
        + 1
        + near.task_requests
        + near.error_jobs
        + CAPACITY_READS,
        "baseline": {
            "wall_seconds": base_wall,
            "cpu_seconds": base_cpu,
            "wall_seconds_min": min(run.wall_seconds for run in baselines),
            "pages_wall_seconds": statistics.median(run.pages_wall_seconds for run in baselines),
            "requests": baselines[-1].requests,
            "runs": [asdict(run) for run in baselines],
        },
        "exporter": {
            "first": {
                "wall_seconds": first.wall_seconds,
                "headers_seconds": first.headers_seconds,
                "cpu_seconds": first.cpu_seconds,
                "requests": first.requests_total,
                "series": first.series,
            },
            "wall_seconds": exp_wall,
            "wall_seconds_min": min(run.wall_seconds for run in identity),
            "headers_seconds": statistics.median(run.headers_seconds for run in identity),
            "collection_seconds": statistics.median(
                run.collection_seconds or 0.0 for run in identity
            ),
            "cpu_seconds": exp_cpu,
            "requests_per_scrape": steady_requests,
            "requests_per_scrape_all": per_scrape,
            "peak_rss_bytes": peak_rss_bytes(exporter.pid),
            "exposition_bytes": identity[-1].body_bytes,
            "series": identity[-1].series,
            "gzip": {
                "wall_seconds": statistics.median(run.wall_seconds for run in coded),
                "wall_seconds_min": min(run.wall_seconds for run in coded),
                "cpu_seconds": statistics.fmean(run.cpu_seconds for run in coded),
                "wire_bytes": coded[-1].wire_bytes,
            },
            "runs": [asdict(run) for run in scrapes],
        },
        "wall_ratio": exp_wall / base_wall,
        "cpu_ratio": exp_cpu / base_cpu if base_cpu > 0 else None,
        "requests_ratio": steady_requests / baselines[-1].requests,
    }


def _naive_summary(runs: list[ScrapeRun], naive: Child) -> dict[str, Any]:
    totals = [0] + [run.requests_total for run in runs]
    return {
        "wall_seconds": statistics.median(run.wall_seconds for run in runs),
        "wall_seconds_min": min(run.wall_seconds for run in runs),
        "cpu_seconds": statistics.fmean(run.cpu_seconds for run in runs),
        "requests_per_scrape": statistics.median(
            after - before for before, after in itertools.pairwise(totals)
        ),
        "peak_rss_bytes": peak_rss_bytes(naive.pid),
        "exposition_bytes": runs[-1].body_bytes,
        "series": runs[-1].series,
        "runs": [asdict(run) for run in runs],
    }


def _naive_ratios(result: dict[str, Any]) -> tuple[float | None, float | None]:
    """The naive peer's wall and CPU ÷ the exporter's steady state (``None`` if not run)."""
    naive, exporter = result["naive"], result["exporter"]
    if naive is None:
        return None, None
    cpu = naive["cpu_seconds"] / exporter["cpu_seconds"] if exporter["cpu_seconds"] > 0 else None
    return naive["wall_seconds"] / exporter["wall_seconds"], cpu


def _render(info: EmulatorInfo, args: argparse.Namespace) -> dict[str, Any]:
    collection, counter = collect_once(info, args.timeout)
    run = time_rendering(collection, counter, max(3, args.repeat))
    return {
        **asdict(run),
        "microseconds_per_series": run.microseconds_per_series,
        "encoder_ratio": run.encoder_ratio,
    }


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
        "load_average": report.load_range(results),
        "repeat": args.repeat,
        "naive_repeat": args.naive_repeat,
        "naive_max_jobs": args.naive_max_jobs,
        "results": results,
        "memory": report.memory_slope(results),
        "targets": report.targets(results),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables, write the JSON and (unless --no-doc) the docs."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    document = run(args, " ".join(["python -m bench.scrape", *arguments]))
    output = output_path(args)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    tables = report.tables(document)
    print(tables)
    print(f"results written to {output}", flush=True)
    if not args.no_doc:
        report.rewrite_doc(args.doc, tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
