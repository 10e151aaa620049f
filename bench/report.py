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
# The sizes the targets judge; larger accounts are stress rows, which no target judges.
TARGET_SIZES = (10_000, 50_000)
TARGETS_AT = 50_000  # where the targets of a single size apply
LATENCY_MS = 20  # the latency of the wall-time target with latency
REQUESTS_RATIO = 1 / 3  # steady-state AMS requests ÷ the baseline's, at most
WALL_RATIO_LATENCY = 0.5
WALL_RATIO_LOOPBACK = 1.0
NAIVE_WALL_RATIO = 20.0  # the naive peer's wall ÷ the exporter's, at least
NAIVE_CPU_RATIO = 10.0
ENCODER_RATIO = 20.0  # prometheus_client's encoder ÷ the exporter's steady render, at least
PEAK_RSS_LIMIT = 150 * MB
PEAK_RSS_AT = TARGETS_AT


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gb": round(_meminfo_kb("MemTotal") / MB, 1),
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


def is_stress(jobs: int) -> bool:
    """Whether a row is beyond the sizes the targets judge."""
    return jobs > max(TARGET_SIZES)


def load_range(results: list[dict[str, Any]]) -> dict[str, float] | None:
    """The lowest and highest 1-minute load average sampled at the start and end of the rows."""
    samples = [r["load_average"][when][0] for r in results for when in ("start", "end")]
    return {"min_1m": min(samples), "max_1m": max(samples)} if samples else None


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
    """Each performance target the run can judge, and the two request checks, per configuration.

    The targets are ratios within the run, at the sizes of :data:`TARGET_SIZES`; the request
    checks hold for every row: a first collection lists everything and makes exactly the requests
    needed, a later one never more than a full listing needs.
    """
    verdicts = []
    for r in results:
        where = f"{r['jobs']:,} jobs, {r['latency_ms']} ms"
        exporter = r["exporter"]
        verdicts.append(
            _verdict(
                "first collection: requests = needed (full listing)",
                where,
                exporter["first"]["requests"],
                "=",
                r["expected_first_requests"],
            )
        )
        verdicts.append(
            _verdict(
                "steady state: requests ≤ needed",
                where,
                exporter["requests_per_scrape"],
                "≤",
                r["expected_requests"],
            )
        )
        if r["jobs"] in TARGET_SIZES:
            verdicts += _size_targets(r, where)
        if r["jobs"] == TARGETS_AT:
            verdicts += _targets_at(r, where)
    return verdicts


def _size_targets(r: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if r["latency_ms"] == LATENCY_MS:
        return [_verdict("wall ≤ 0.5x baseline", where, r["wall_ratio"], "≤", WALL_RATIO_LATENCY)]
    if r["latency_ms"] == 0:
        return [_verdict("wall ≤ 1.0x baseline", where, r["wall_ratio"], "≤", WALL_RATIO_LOOPBACK)]
    return []


def _targets_at(r: dict[str, Any], where: str) -> list[dict[str, Any]]:
    verdicts = [
        _verdict(
            "steady state: AMS requests ≤ ⅓ of the baseline's",
            where,
            r["requests_ratio"],
            "≤",
            REQUESTS_RATIO,
        )
    ]
    if r["latency_ms"] == 0 and r["naive"] is not None:
        verdicts.append(
            _verdict(
                "naive wall ÷ exporter wall ≥ 20",
                where,
                r["naive_wall_ratio"],
                "≥",
                NAIVE_WALL_RATIO,
            )
        )
        if r["naive_cpu_ratio"] is not None:
            verdicts.append(
                _verdict(
                    "naive CPU ÷ exporter CPU ≥ 10",
                    where,
                    r["naive_cpu_ratio"],
                    "≥",
                    NAIVE_CPU_RATIO,
                )
            )
    if "render" in r:
        verdicts.append(
            _verdict(
                "prometheus_client encoder ÷ exporter steady render ≥ 20",
                where,
                r["render"]["encoder_ratio"],
                "≥",
                ENCODER_RATIO,
            )
        )
    peak = r["exporter"]["peak_rss_bytes"]
    verdicts.append(_verdict("peak RSS < 150 MB", where, peak / MB, "<", PEAK_RSS_LIMIT / MB))
    per_job = peak / max(1, r["in_scope_jobs"])
    verdicts.append(_verdict("peak RSS per in-scope job (bytes)", where, per_job, None, None))
    return verdicts


def _verdict(
    name: str, where: str, measured: float, op: str | None, limit: float | None
) -> dict[str, Any]:
    """``measured`` against ``limit`` by ``op`` (``=``, ``≤``, ``<``, ``≥``); with ``None``
    reported, not judged."""
    met: bool | None = None
    if op == "=":
        met = measured == limit
    elif op is not None and limit is not None:
        met = {"≤": measured <= limit, "<": measured < limit, "≥": measured >= limit}[op]
    return {
        "target": name,
        "where": where,
        "measured": measured,
        "op": op,
        "limit": limit,
        "met": met,
    }


def tables(document: dict[str, Any]) -> str:
    """The Markdown that ``docs/performance.md`` keeps between its markers."""
    results = document["results"]
    m = document["machine"]
    load = document["load_average"]
    measured_load = (
        f"; 1-minute load average {load['min_1m']:.2f} to {load['max_1m']:.2f} at the starts and "
        "ends of the rows (the benchmark's own processes included)"
        if load
        else ""
    )
    lines = [
        f"Measured {document['started']} with `{document['command']}` "
        f"({document['repeat']} steady-state scrapes per row, {document['naive_repeat']} of the "
        f"naive peer up to {document['naive_max_jobs']:,} jobs) on {m['cpu']}, "
        f"{m['logical_cpus']} logical CPUs, {m['memory_gb']} GB, Python {m['python']}, "
        f"{m['platform']}{measured_load}. Rows marked *stress* are judged by no target.",
    ]
    lines += _steady_table(results) + _first_table(results) + _gzip_table(results)
    lines += _size_table(results) + _render_table(results) + _profile_table(results)
    lines += _memory_line(document)
    lines += _target_table(document["targets"])
    return "\n".join(lines) + "\n"


def _jobs(r: dict[str, Any]) -> str:
    return f"{r['jobs']:,} *stress*" if r["stress"] else f"{r['jobs']:,}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _wall(runs: dict[str, Any]) -> str:
    return f"{runs['wall_seconds']:.3f} s ({runs['wall_seconds_min']:.3f})"


def _size(count: float) -> str:
    return f"{count / MB:.1f} MB" if count >= MB / 10 else f"{count / 1024:.0f} kB"


def _steady_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "**Steady state: scrape time and CPU** (the scrapes after the first, text format without "
        "compression; wall: median, fastest in brackets; CPU: mean per scrape, of the exporter's "
        "and the naive peer's processes and of the baseline client)",
        "",
        "| jobs | in scope | latency | baseline wall | exporter wall | exporter ÷ baseline "
        "| naive wall | naive ÷ exporter | baseline CPU | exporter CPU | naive CPU "
        "| naive ÷ exporter |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        b, e, n = r["baseline"], r["exporter"], r["naive"]
        naive_wall = "not run" if n is None else _wall(n)
        naive_cpu = "not run" if n is None else f"{n['cpu_seconds']:.3f} s"
        lines.append(
            f"| {_jobs(r)} | {r['in_scope_jobs']:,} | {r['latency_ms']} ms | {_wall(b)} "
            f"| {_wall(e)} | {r['wall_ratio']:.2f}x | {naive_wall} "
            f"| {_ratio(r['naive_wall_ratio'])} | {b['cpu_seconds']:.3f} s "
            f"| {e['cpu_seconds']:.3f} s | {naive_cpu} | {_ratio(r['naive_cpu_ratio'])} |"
        )
    return lines


def _first_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "**The exporter's first collection and its steady state** (first: the scrape sent the "
        "moment a fresh exporter listens, which shares its start-up collection, a full listing; "
        "steady: the median of the later scrapes; of it, collecting: the exporter's "
        "`ams_collection_duration_seconds`, the time its collection took, the rest rendering "
        "and transfer; requests: AMS requests; needed: "
        "⌊in scope ÷ 1000⌋ + 1 pages and the tasks of Processing/Canceling jobs, for the first "
        "also the tasks of jobs in Error and the two capacity reads)",
        "",
        "| jobs | latency | first wall | first CPU | first requests | needed (full) "
        "| steady wall | of it, collecting | steady CPU | steady requests | needed "
        "| baseline requests | steady ÷ baseline |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        e = r["exporter"]
        first = e["first"]
        lines.append(
            f"| {_jobs(r)} | {r['latency_ms']} ms | {first['wall_seconds']:.3f} s "
            f"| {first['cpu_seconds']:.3f} s | {first['requests']} "
            f"| {r['expected_first_requests']} | {e['wall_seconds']:.3f} s "
            f"| {e.get('collection_seconds', 0.0):.3f} s "
            f"| {e['cpu_seconds']:.3f} s | {e['requests_per_scrape']:g} "
            f"| {r['expected_requests']} | {r['baseline']['requests']} "
            f"| {r['requests_ratio']:.2f} |"
        )
    return lines


def _gzip_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "**Compression** (the exporter's steady-state scrapes, alternately with "
        "`Accept-Encoding: identity` and `gzip`, which it writes at level 1; bytes as sent)",
        "",
        "| jobs | latency | identity wall | gzip wall | identity CPU | gzip CPU "
        "| identity bytes | gzip bytes | gzip ÷ identity |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        e = r["exporter"]
        z = e["gzip"]
        lines.append(
            f"| {_jobs(r)} | {r['latency_ms']} ms | {_wall(e)} | {_wall(z)} "
            f"| {e['cpu_seconds']:.3f} s | {z['cpu_seconds']:.3f} s "
            f"| {_size(e['exposition_bytes'])} | {_size(z['wire_bytes'])} "
            f"| {z['wire_bytes'] / e['exposition_bytes']:.2f} |"
        )
    return lines


def _size_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "**Exposition and memory** (peak RSS: `VmHWM` of each process after its measured scrapes; "
        "naive requests: AMS requests per scrape; load: the 1-minute load average at the start "
        "and the end of the row)",
        "",
        "| jobs | latency | exporter series | exposition | exporter peak RSS | per in-scope job "
        "| naive series | naive peak RSS | naive requests | baseline waiting for pages | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        e, n = r["exporter"], r["naive"]
        naive = (
            "not run | not run | not run"
            if n is None
            else f"{n['series']:,} | {n['peak_rss_bytes'] / MB:.0f} MB "
            f"| {n['requests_per_scrape']:g}"
        )
        load = r["load_average"]
        per_job = e["peak_rss_bytes"] / max(1, r["in_scope_jobs"])
        lines.append(
            f"| {_jobs(r)} | {r['latency_ms']} ms | {e['series']:,} "
            f"| {_size(e['exposition_bytes'])} | {e['peak_rss_bytes'] / MB:.0f} MB "
            f"| {per_job:,.0f} B | {naive} | {r['baseline']['pages_wall_seconds']:.3f} s "
            f"| {load['start'][0]:.2f} → {load['end'][0]:.2f} |"
        )
    return lines


def _render_table(results: list[dict[str, Any]]) -> list[str]:
    rendered = [r for r in results if "render" in r]
    if not rendered:
        return []
    lines = [
        "",
        "**Rendering alone** (one finished collection in one process, medians; exporter first: "
        "the metrics route of a fresh app, nothing remembered; steady: one app rendering it again "
        "and again; prometheus_client: the reference families through `generate_latest`, the "
        "same bytes)",
        "",
        "| jobs | series | exposition | exporter first | exporter steady | per series "
        "| prometheus_client | encoder ÷ exporter steady |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rendered:
        x = r["render"]
        lines.append(
            f"| {_jobs(r)} | {x['series']:,} | {_size(x['body_bytes'])} "
            f"| {x['first_wall_seconds'] * 1000:.0f} ms | {x['wall_seconds'] * 1000:.0f} ms "
            f"| {x['microseconds_per_series']:.2f} µs "
            f"| {x['reference_wall_seconds'] * 1000:.0f} ms | {x['encoder_ratio']:.1f}x |"
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
    lines = [
        "",
        "**Performance targets and request checks** (ratios within this run)",
        "",
        "| target | where | measured | limit | met |",
        "|---|---|---:|---:|:---:|",
    ]
    for v in verdicts:
        limit = "-" if v["limit"] is None else f"{v['op']} {_number(v['limit'])}"
        met = "-" if v["met"] is None else ("yes" if v["met"] else "**no**")
        lines.append(
            f"| {v['target']} | {v['where']} | {_number(v['measured'])} | {limit} | {met} |"
        )
    return lines


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


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
