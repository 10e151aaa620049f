"""The benchmark's verdicts and tables: the performance targets, Markdown, the marked docs section."""

from __future__ import annotations

import itertools
import os
import platform
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin (written by python -m bench.scrape; do not edit by hand) -->"
END = "<!-- bench:end -->"
MB = 1024 * 1024
WALL_RATIO_LATENCY = 0.5  # with 20 ms per request, at 10,000 jobs and more
WALL_RATIO_LOOPBACK = 1.1
CPU_RATIO = 1.25
PEAK_RSS_LIMIT = 200 * MB
PEAK_RSS_AT = 100_000
RENDER_LIMIT_SECONDS = 1.0


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gb": round(_meminfo_kb("MemTotal") / MB, 1),
        "note": "shared with other engineers' test runs while measured",
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def memory_slope(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Peak RSS per in-scope job, overall and between consecutive account sizes (no latency)."""
    loopback = [r for r in results if r["latency_ms"] == 0]
    runs = sorted(loopback or results, key=lambda r: r["in_scope_jobs"])
    steps = [
        {
            "between_jobs": [small["jobs"], large["jobs"]],
            "bytes_per_in_scope_job": _slope(small, large),
        }
        for small, large in itertools.pairwise(runs)
        if large["in_scope_jobs"] > small["in_scope_jobs"]
    ]
    if not steps:
        return {"bytes_per_in_scope_job": None, "between_jobs": None, "steps": []}
    return {
        "bytes_per_in_scope_job": _slope(runs[0], runs[-1]),
        "between_jobs": [runs[0]["jobs"], runs[-1]["jobs"]],
        "steps": steps,
    }


def _slope(small: dict[str, Any], large: dict[str, Any]) -> float:
    grown = large["exporter"]["peak_rss_bytes"] - small["exporter"]["peak_rss_bytes"]
    return float(grown / (large["in_scope_jobs"] - small["in_scope_jobs"]))


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each performance target that the run can judge, per configuration."""
    verdicts = []
    for r in results:
        where = f"{r['jobs']} jobs, {r['latency_ms']} ms"
        if r["latency_ms"] == 20 and r["jobs"] >= 10_000:
            verdicts.append(_verdict("wall ≤ 0.5x baseline", where, r["wall_ratio"], 0.5))
        if r["latency_ms"] == 0:
            verdicts.append(_verdict("wall ≤ 1.1x baseline", where, r["wall_ratio"], 1.1))
        if r["cpu_ratio"] is not None:
            verdicts.append(_verdict("CPU ≤ 1.25x baseline", where, r["cpu_ratio"], CPU_RATIO))
        requests = r["exporter"]["requests_per_scrape"]
        verdicts.append(
            _verdict("requests = needed", where, requests, r["expected_requests"], exact=True)
        )
        if r["jobs"] == PEAK_RSS_AT:
            peak = r["exporter"]["peak_rss_bytes"] / MB
            verdicts.append(_verdict("peak RSS < 200 MB", where, peak, PEAK_RSS_LIMIT / MB))
        if "render" in r and r["render"]["series"] >= 100_000:
            seconds = r["render"]["wall_seconds"]
            verdicts.append(_verdict("render < 1 s", where, seconds, RENDER_LIMIT_SECONDS))
    return verdicts


def _verdict(
    name: str, where: str, measured: float, limit: float, *, exact: bool = False
) -> dict[str, Any]:
    met = measured == limit if exact else measured <= limit
    return {"target": name, "where": where, "measured": measured, "limit": limit, "met": met}


def tables(document: dict[str, Any]) -> str:
    """The Markdown that ``docs/performance.md`` keeps between its markers."""
    results = document["results"]
    m = document["machine"]
    lines = [
        f"Measured {document['started']} with `{document['command']}` "
        f"({document['repeat']} scrapes per row) on {m['cpu']}, {m['logical_cpus']} logical "
        f"CPUs, {m['memory_gb']} GB, Python {m['python']}, {m['platform']}; "
        f"the machine was {m['note']}.",
        "",
        "**Scrape time and CPU** (wall: median, fastest in brackets; CPU: mean per scrape, of "
        "the exporter process and of the baseline client)",
        "",
        "| jobs | in scope | latency | baseline wall | exporter wall | ratio "
        "| baseline CPU | exporter CPU | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        b, e = r["baseline"], r["exporter"]
        cpu_ratio = "-" if r["cpu_ratio"] is None else f"{r['cpu_ratio']:.2f}x"
        lines.append(
            f"| {r['jobs']:,} | {r['in_scope_jobs']:,} | {r['latency_ms']} ms "
            f"| {b['wall_seconds']:.3f} s ({b['wall_seconds_min']:.3f}) "
            f"| {e['wall_seconds']:.3f} s ({e['wall_seconds_min']:.3f}) | {r['wall_ratio']:.2f}x "
            f"| {b['cpu_seconds']:.3f} s | {e['cpu_seconds']:.3f} s | {cpu_ratio} |"
        )
    lines += _size_table(results) + _render_table(results) + _profile_table(results)
    lines += _memory_line(document)
    lines += _target_table(document["targets"])
    return "\n".join(lines) + "\n"


def _size_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "**Upstream requests, exposition and memory** (requests: AMS requests per scrape; "
        "needed = ⌊in scope ÷ 1000⌋ + 1 pages + tasks of Processing/Canceling jobs; first = the "
        "exporter's start-up collection, which also reads the tasks of jobs in Error once)",
        "",
        "| jobs | latency | baseline requests | exporter requests | needed | first "
        "| baseline waiting for pages | series | exposition | peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        e = r["exporter"]
        lines.append(
            f"| {r['jobs']:,} | {r['latency_ms']} ms | {r['baseline']['requests']} "
            f"| {e['requests_per_scrape']:g} | {r['expected_requests']} "
            f"| {e['first_collection_requests']} "
            f"| {r['baseline']['pages_wall_seconds']:.3f} s | {e['series']:,} "
            f"| {e['exposition_bytes'] / MB:.1f} MB | {e['peak_rss_bytes'] / MB:.0f} MB |"
        )
    return lines


def _render_table(results: list[dict[str, Any]]) -> list[str]:
    rendered = [r for r in results if "render" in r]
    if not rendered:
        return []
    lines = [
        "",
        "**Rendering alone** (the metrics route on a finished collection, in one process; median)",
        "",
        "| jobs | series | exposition | wall | CPU | per series |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rendered:
        x = r["render"]
        lines.append(
            f"| {r['jobs']:,} | {x['series']:,} | {x['body_bytes'] / MB:.1f} MB "
            f"| {x['wall_seconds'] * 1000:.0f} ms | {x['cpu_seconds'] * 1000:.0f} ms "
            f"| {x['microseconds_per_series']:.2f} µs |"
        )
    return lines


def _profile_table(results: list[dict[str, Any]]) -> list[str]:
    profiled = [r for r in results if r.get("profile")]
    if not profiled:
        return []
    categories = list(dict.fromkeys(name for r in profiled for name in r["profile"]))
    lines = [
        "",
        "**Where the exporter's CPU goes** (py-spy samples holding the GIL over "
        "extra scrapes without latency; share of samples)",
        "",
        "| | " + " | ".join(f"{r['jobs']:,} jobs" for r in profiled) + " |",
        "|---|" + "---:|" * len(profiled),
    ]
    for name in categories:
        cells = " | ".join(f"{100 * r['profile'].get(name, 0.0):.0f} %" for r in profiled)
        lines.append(f"| {name} | {cells} |")
    return lines


def _memory_line(document: dict[str, Any]) -> list[str]:
    slope = document["memory"]
    if slope["bytes_per_in_scope_job"] is None:
        return []
    small, large = slope["between_jobs"]
    steps = "; ".join(
        f"{step['between_jobs'][0]:,} to {step['between_jobs'][1]:,} jobs: "
        f"{step['bytes_per_in_scope_job']:,.0f}"
        for step in slope.get("steps", [])
    )
    return [
        "",
        f"Peak RSS grows by **{slope['bytes_per_in_scope_job']:,.0f} bytes per in-scope job** "
        f"between the {small:,}- and the {large:,}-job accounts, no latency (per step: {steps}).",
    ]


def _target_table(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["", "**Performance targets**", "", "| target | where | measured | limit | met |"]
    lines.append("|---|---|---:|---:|:---:|")
    for v in verdicts:
        lines.append(
            f"| {v['target']} | {v['where']} | {v['measured']:.3g} | {v['limit']:.3g} "
            f"| {'yes' if v['met'] else '**no**'} |"
        )
    return lines


def rewrite_doc(path: Path, tables_text: str) -> None:
    """Replace the text between the markers of ``path`` (appending them if absent)."""
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"{BEGIN}\n{tables_text}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
