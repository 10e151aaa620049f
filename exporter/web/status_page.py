"""The exporter's ``/`` page: a live, self-contained HTML view of the last collection.

Server-rendered, inline CSS only (it must work offline), refreshed by ``<meta http-equiv="refresh">``.
The numbers come from :class:`exporter.collect.jobview.JobView`, the same values the metrics expose. Every
string from AMS or the configuration goes through :func:`html.escape`: job names may hold quotes,
backslashes, markup and newlines.

Each job row carries machine-readable ``data-`` attributes (job id, state, raw seconds) so that tests
and scripts can compare the page with ``/metrics`` without parsing formatted durations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from html import escape
from string import Template

from exporter.ams.model import JobState
from exporter.collect.jobview import JobView
from exporter.collect.snapshot import AccountResult, Collection
from exporter.redact import redact
from exporter.web.palette import (
    DARK_TEXT,
    DOWN_COLOUR,
    LIGHT_TEXT,
    STATE_COLOURS,
    STATE_TEXT_COLOURS,
    UP_COLOUR,
)

# Row order: jobs still moving, then failures, then the rest, oldest first within each group.
_ROW_GROUP: Mapping[JobState, int] = {
    JobState.ERROR: 1,
    JobState.FINISHED: 2,
    JobState.CANCELED: 2,
}

# The palette's colours go in as $text and $down, lower case like the rest of the sheet.
_CSS = Template("""
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;
margin:0;padding:1rem 1.5rem;color:$text;background:#f7f8fa}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.5rem 1.5rem;margin-bottom:1rem}
h1{font-size:1.4rem;margin:0}h2{font-size:1.15rem;margin:0}
.meta{color:#55585f;font-size:.9rem}
section.account{background:#fff;border:1px solid #d8dbe0;border-radius:6px;padding:.8rem 1rem;
margin-bottom:1rem}
.health{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1.4rem;margin-bottom:.6rem}
.badge{display:inline-block;border-radius:3px;padding:.1rem .45rem;font-size:.8rem;font-weight:600;
white-space:nowrap}
.error{color:#a0101f;background:#fdecee;border-left:3px solid $down;padding:.3rem .6rem;
margin:.4rem 0 .6rem;white-space:pre-wrap;overflow-wrap:anywhere}
.counts{display:flex;flex-wrap:wrap;gap:.3rem;margin-bottom:.6rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e6e8eb;vertical-align:top}
th{background:#eef0f3;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name{white-space:pre-wrap;overflow-wrap:anywhere;max-width:32rem}
td.progress{white-space:nowrap}
.bar{display:inline-block;width:8rem;height:.7rem;background:#e3e6ea;border-radius:3px;
vertical-align:middle;overflow:hidden;margin-right:.4rem}
.bar>span{display:block;height:100%}
.empty{color:#55585f;font-style:italic}
code{font-size:.85rem}
""").substitute(text=DARK_TEXT, down=DOWN_COLOUR.lower())


def render_status_page(
    collection: Collection | None,
    *,
    version: str,
    metrics_path: str,
    refresh_seconds: int = 10,
    now: float | None = None,
) -> str:
    """The complete HTML document for ``/``.

    ``collection`` is the latest finished collection, or ``None`` before the first one completes.
    With ``now`` (Unix seconds) the page says how old the collection is.
    """
    if collection is None:
        body = '<p class="empty" id="no-collection">No collection has completed yet.</p>'
        collected = "no collection yet"
    else:
        body = "\n".join(
            _account_section(result, collection.time) for result in collection.accounts
        )
        if not collection.accounts:
            body = '<p class="empty">No accounts are configured.</p>'
        collected = f"collected {_format_time(collection.time)}"
        if now is not None:
            collected += f" ({_format_duration(max(0.0, now - collection.time))} ago)"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{int(refresh_seconds)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ams-exporter {escape(version)}</title>
<style>{_CSS}{_state_css()}</style>
</head>
<body>
<header>
<h1>ams-exporter <span class="meta" id="version">{escape(version)}</span></h1>
<a id="metrics-link" href="{escape(metrics_path, quote=True)}">Metrics</a>
<span class="meta">{escape(collected)}; this page refreshes every {int(refresh_seconds)} s</span>
</header>
<main>
{body}
</main>
</body>
</html>
"""


def _state_css() -> str:
    return "\n".join(
        f".state-{state.label}{{background:{colour};color:{STATE_TEXT_COLOURS[state]}}}"
        for state, colour in STATE_COLOURS.items()
    )


def _account_section(result: AccountResult, now: float) -> str:
    name = escape(result.account, quote=True)
    health_colour = UP_COLOUR if result.up else DOWN_COLOUR
    health = (
        f'<span class="badge health-badge" style="background:{health_colour};color:{LIGHT_TEXT}">'
        f"{'UP' if result.up else 'DOWN'}</span>"
    )
    if result.last_success is None:
        last_success = "never"
    else:
        ago = _format_duration(max(0.0, now - result.last_success))
        last_success = f"{_format_time(result.last_success)} ({ago} ago)"
    error = f'<div class="error">{escape(redact(result.error))}</div>' if result.error else ""
    counts = "".join(
        f'<span class="badge state-{state.label}" data-state="{state.label}" '
        f'data-count="{result.state_counts.get(state, 0)}">'
        f"{state.label} {result.state_counts.get(state, 0)}</span>"
        for state in JobState
    )
    dropped = (
        f'<span class="dropped">{result.dropped} jobs without detail (max_jobs)</span>'
        if result.dropped
        else ""
    )
    return f"""<section class="account" data-account="{name}" data-up="{int(result.up)}">
<div class="health"><h2>{name}</h2>{health}
<span>collection took <b>{result.duration_seconds:.2f} s</b></span>
<span>last success: <b class="last-success">{escape(last_success)}</b></span>{dropped}</div>
{error}<div class="counts">{counts}</div>
{_jobs_table(result.views(now))}
</section>"""


def _jobs_table(views: Iterable[JobView]) -> str:
    ordered = sorted(
        views, key=lambda v: (_ROW_GROUP.get(v.job.state, 0), -v.age_seconds, v.job.id)
    )
    if not ordered:
        return '<p class="empty">No jobs in scope.</p>'
    rows = "\n".join(_job_row(view) for view in ordered)
    return f"""<table class="jobs">
<thead><tr><th>Name</th><th>State</th><th>Progress</th><th>Age</th><th>Queued</th><th>Running</th>
<th>Error codes</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""


def _job_row(view: JobView) -> str:
    job = view.job
    state = job.state.label
    ratio = view.progress_ratio
    if ratio is None:
        progress = '<td class="progress" data-ratio="">unknown</td>'
    else:
        percent = 100.0 * ratio
        progress = (
            f'<td class="progress" data-ratio="{ratio!r}">'
            f'<span class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{percent:.0f}"><span style="width:{percent:.1f}%;'
            f'background:{STATE_COLOURS[job.state]}"></span></span>'
            f"{percent:.0f}%</td>"
        )
    codes = ", ".join(f"{escape(code)} (task {escape(task)})" for task, code in view.error_codes)
    return (
        f'<tr data-job-id="{escape(job.id, quote=True)}" data-state="{state}">'
        f'<td class="name" title="{escape(job.id, quote=True)}">{escape(job.name)}</td>'
        f'<td><span class="badge state-{state}">{state}</span></td>'
        f"{progress}"
        f"{_seconds_cell('age', view.age_seconds)}"
        f"{_seconds_cell('queued', view.queued_seconds)}"
        f"{_seconds_cell('running', view.running_seconds)}"
        f'<td class="codes">{codes}</td></tr>'
    )


def _seconds_cell(kind: str, seconds: float | None) -> str:
    if seconds is None:  # AMS sent nothing readable to derive it from
        return f'<td class="num {kind}">\u2013</td>'
    return f'<td class="num {kind}" data-seconds="{seconds!r}">{_format_duration(seconds)}</td>'


def _format_duration(seconds: float) -> str:
    """``2d 03h``, ``1h 02m``, ``4m 05s``, ``7s``: two units are enough to read at a glance."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _format_time(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
