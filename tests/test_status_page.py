"""The status page rendered from a hand-built collection, read back with ``html.parser``."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter.ams.model import Job, JobState, Task
from exporter.collect.snapshot import AccountResult, Collection
from exporter.web.status_page import STATE_COLOURS, render_status_page
from tests.support.process import Child

NOW = 1_780_000_000.0
HOSTILE_NAMES = [
    "quote \" and ' apostrophe",
    "back\\slash \\n not a newline",
    "<script>alert('x')</script>",
    "two\nlines",
    "转码任务 — 中文名称",
    "&amp; already escaped? </td></tr>",
]


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                    found.append(child)
                found.extend(child.find_all(tag, **attrs))
        return found

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


VOID = {"meta", "link", "br", "img", "input", "hr"}


class TreeBuilder(HTMLParser):
    """A small DOM: enough to read tables and attributes, strict about unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.doctype: str | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "unclosed tags"
    assert builder.doctype is not None and builder.doctype.lower() == "doctype html"
    return builder.root


def job(index: int, state: JobState, name: str, **kw: float | None) -> Job:
    created = NOW - 3600 - index
    started = kw.get("start", created + 120)
    return Job(
        id=f"nb:jid:UUID:{index:08d}-0000-0000-0000-000000000000",
        name=name,
        state=state,
        created=created,
        last_modified=NOW - 10,
        start_time=None if state in (JobState.QUEUED, JobState.SCHEDULED) else started,
        end_time=kw.get("end"),
        priority=index,
        running_duration_seconds=kw.get("running", 0.0) or 0.0,
    )


def task(job_id: str, progress: float, codes: tuple[str, ...] = ()) -> Task:
    return Task(
        id=f"{job_id}-task",
        name="Media Encoder Standard",
        state=2,
        progress=progress,
        running_duration_seconds=0.0,
        start_time=None,
        end_time=None,
        error_codes=codes,
    )


def sample_collection() -> Collection:
    jobs = [
        job(0, JobState.QUEUED, HOSTILE_NAMES[0]),
        job(1, JobState.SCHEDULED, HOSTILE_NAMES[1]),
        job(2, JobState.PROCESSING, HOSTILE_NAMES[2], start=NOW - 600),
        job(3, JobState.FINISHED, HOSTILE_NAMES[3], end=NOW - 60, running=1800.5),
        job(4, JobState.ERROR, HOSTILE_NAMES[4], end=NOW - 30, running=42.0),
        job(5, JobState.CANCELED, HOSTILE_NAMES[5], end=NOW - 20, running=3.0),
        job(6, JobState.CANCELING, "plain name"),
    ]
    tasks = {
        jobs[2].id: (task(jobs[2].id, 42.0),),
        jobs[4].id: (task(jobs[4].id, 10.0, ("ErrorProcessingTask", "SomethingUndocumented")),),
        jobs[6].id: (task(jobs[6].id, 80.0),),
    }
    counts = dict.fromkeys(JobState, 1)
    counts[JobState.FINISHED] = 12
    healthy = AccountResult(
        account="prod <west>",
        up=True,
        duration_seconds=0.4321,
        last_success=NOW - 5,
        jobs=tuple(jobs),
        tasks=tasks,
        state_counts=counts,
        dropped=11,
    )
    broken = AccountResult(
        account="staging",
        up=False,
        duration_seconds=10.0,
        last_success=None,
        error='AAD answered 401 invalid_client for client "abc" <b>bold</b>',
    )
    return Collection(time=NOW, accounts=(healthy, broken))


@pytest.fixture(scope="module")
def page() -> str:
    return render_status_page(sample_collection(), version="1.2.3", metrics_path="/metrics")


@pytest.fixture(scope="module")
def dom(page: str) -> Node:
    return parse(page)


def job_rows(dom: Node, account: str) -> list[Node]:
    (section,) = dom.find_all("section", **{"data-account": account})
    (tbody,) = section.find_all("tbody")
    return tbody.find_all("tr")


def cell(row: Node, css_class: str) -> Node:
    (found,) = [td for td in row.find_all("td") if css_class in td.classes()]
    return found


def test_header_names_the_exporter_version_and_links_the_metrics_path(dom: Node) -> None:
    (title,) = dom.find_all("title")
    assert title.text() == "ams-exporter 1.2.3"
    (link,) = dom.find_all("a", id="metrics-link")
    assert link.attrs["href"] == "/metrics"
    (version,) = dom.find_all("span", id="version")
    assert version.text() == "1.2.3"


def test_page_refreshes_itself(dom: Node) -> None:
    refresh = [m for m in dom.find_all("meta") if m.attrs.get("http-equiv") == "refresh"]
    assert [m.attrs["content"] for m in refresh] == ["10"]
    other = render_status_page(None, version="1", metrics_path="/m", refresh_seconds=30)
    assert [
        m.attrs["content"] for m in parse(other).find_all("meta") if "http-equiv" in m.attrs
    ] == ["30"]


def test_page_has_no_external_assets_and_no_script(page: str, dom: Node) -> None:
    assert dom.find_all("script") == []
    assert dom.find_all("link") == [] and dom.find_all("img") == []
    hrefs = [a.attrs["href"] for a in dom.find_all("a")]
    assert hrefs == ["/metrics"]
    (style,) = dom.find_all("style")
    assert "url(" not in style.text() and "@import" not in style.text()
    assert "http://" not in page and "https://" not in page


def test_every_hostile_job_name_comes_back_exactly(dom: Node) -> None:
    names = [cell(row, "name").text() for row in job_rows(dom, "prod <west>")]
    assert sorted(names) == sorted([*HOSTILE_NAMES, "plain name"])


def test_names_cannot_break_out_of_their_cell(page: str) -> None:
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert '</td></tr>"' not in page


def test_account_name_and_error_message_are_escaped(dom: Node) -> None:
    (prod,) = dom.find_all("section", **{"data-account": "prod <west>"})
    assert prod.find_all("h2")[0].text() == "prod <west>"
    (staging,) = dom.find_all("section", **{"data-account": "staging"})
    (error,) = [d for d in staging.find_all("div") if "error" in d.classes()]
    assert error.text() == 'AAD answered 401 invalid_client for client "abc" <b>bold</b>'
    assert staging.find_all("b", **{"class": "last-success"})[0].text() == "never"


def test_collection_health_per_account(dom: Node) -> None:
    (prod,) = dom.find_all("section", **{"data-account": "prod <west>"})
    (staging,) = dom.find_all("section", **{"data-account": "staging"})
    assert prod.attrs["data-up"] == "1" and staging.attrs["data-up"] == "0"
    badges = {
        s.attrs["data-account"]: next(
            b.text() for b in s.find_all("span") if "health-badge" in b.classes()
        )
        for s in (prod, staging)
    }
    assert badges == {"prod <west>": "UP", "staging": "DOWN"}
    assert "collection took 0.43 s" in prod.text()
    last = prod.find_all("b", **{"class": "last-success"})[0].text()
    assert last == "2026-05-28 20:26:35 UTC (5s ago)"
    assert "11 jobs without detail (max_jobs)" in prod.text()
    assert [d for d in prod.find_all("div") if "error" in d.classes()] == []
    assert "No jobs in scope." in staging.text()


def test_state_counts_cover_all_states(dom: Node) -> None:
    (prod,) = dom.find_all("section", **{"data-account": "prod <west>"})
    chips = {
        s.attrs["data-state"]: s.attrs["data-count"]
        for s in prod.find_all("span")
        if "data-count" in s.attrs
    }
    assert chips == {s.label: ("12" if s is JobState.FINISHED else "1") for s in JobState}


def test_table_shows_the_jobview_numbers(dom: Node) -> None:
    collection = sample_collection()
    views = {v.job.id: v for v in collection.accounts[0].views(collection.time)}
    rows = job_rows(dom, "prod <west>")
    assert len(rows) == len(views)
    for row in rows:
        view = views[row.attrs["data-job-id"]]
        assert row.attrs["data-state"] == view.job.state.label
        assert cell(row, "name").text() == view.job.name
        assert cell(row, "name").attrs["title"] == view.job.id
        assert float(cell(row, "age").attrs["data-seconds"]) == view.age_seconds
        assert float(cell(row, "queued").attrs["data-seconds"]) == view.queued_seconds
        assert float(cell(row, "running").attrs["data-seconds"]) == view.running_seconds
        ratio = cell(row, "progress").attrs["data-ratio"]
        assert (float(ratio) if ratio else None) == view.progress_ratio
        expected_codes = ", ".join(f"{code} (task {task})" for task, code in view.error_codes)
        assert cell(row, "codes").text() == expected_codes


def test_durations_read_at_a_glance(dom: Node) -> None:
    rows = {r.attrs["data-state"]: r for r in job_rows(dom, "prod <west>")}
    assert cell(rows["Processing"], "running").text() == "10m 00s"
    assert cell(rows["Finished"], "running").text() == "30m 00s"
    assert cell(rows["Queued"], "age").text() == "1h 00m"
    assert cell(rows["Error"], "running").text() == "42s"


def test_progress_bar_width_and_label(dom: Node) -> None:
    rows = {r.attrs["data-state"]: r for r in job_rows(dom, "prod <west>")}
    processing = cell(rows["Processing"], "progress")
    (bar,) = [s for s in processing.find_all("span") if s.attrs.get("role") == "progressbar"]
    assert bar.attrs["aria-valuenow"] == "42"
    assert bar.children and isinstance(bar.children[0], Node)
    assert bar.children[0].attrs["style"] == "width:42.0%;background:#3274D9"
    assert processing.text() == "42%"
    assert cell(rows["Finished"], "progress").text() == "100%"
    # A Canceled job without tasks has no known progress.
    assert cell(rows["Canceled"], "progress").text() == "unknown"


def test_error_codes_are_the_documented_list_only(dom: Node) -> None:
    rows = {r.attrs["data-state"]: r for r in job_rows(dom, "prod <west>")}
    task_id = rows["Error"].attrs["data-job-id"] + "-task"
    assert cell(rows["Error"], "codes").text() == (
        f"ErrorProcessingTask (task {task_id}), Unknown (task {task_id})"
    )
    assert all(cell(r, "codes").text() == "" for s, r in rows.items() if s != "Error")


def test_every_state_has_its_colour(dom: Node) -> None:
    (style,) = dom.find_all("style")
    css = style.text()
    rows = job_rows(dom, "prod <west>")
    seen = set()
    for row in rows:
        (badge,) = [s for s in row.find_all("span") if "badge" in s.classes()]
        state = row.attrs["data-state"]
        assert badge.classes() == {"badge", f"state-{state}"}
        assert badge.text() == state
        rule = re.search(
            rf"\.state-{state}\{{background:(#[0-9A-Fa-f]{{6}});color:(#[0-9a-f]+)\}}", css
        )
        assert rule is not None, state
        assert rule.group(1) == STATE_COLOURS[JobState[state.upper()]]
        seen.add(state)
    assert seen == {s.label for s in JobState}
    assert len(set(STATE_COLOURS.values())) == len(JobState)
    assert STATE_COLOURS[JobState.ERROR].upper() == "#C4162A"  # red
    assert STATE_COLOURS[JobState.FINISHED].upper() == "#37872D"  # green
    assert STATE_COLOURS[JobState.PROCESSING].upper() == "#3274D9"  # blue


def test_active_jobs_come_first_then_failures_oldest_first() -> None:
    base = sample_collection()
    account = base.accounts[0]
    older_error = job(7, JobState.ERROR, "older failure", end=NOW - 5000)
    collection = Collection(
        time=NOW,
        accounts=(
            AccountResult(
                account="a",
                up=True,
                duration_seconds=1.0,
                last_success=NOW,
                jobs=(*account.jobs, older_error),
                tasks=account.tasks,
            ),
        ),
    )
    dom = parse(render_status_page(collection, version="v", metrics_path="/m"))
    rows = job_rows(dom, "a")
    states = [r.attrs["data-state"] for r in rows]
    groups = [
        0 if s in {"Queued", "Scheduled", "Processing", "Canceling"} else 1 if s == "Error" else 2
        for s in states
    ]
    assert groups == sorted(groups)
    assert [cell(r, "name").text() for r in rows if r.attrs["data-state"] == "Error"] == [
        "older failure",
        HOSTILE_NAMES[4],
    ]
    ages = [float(cell(r, "age").attrs["data-seconds"]) for r in rows]
    for group in (0, 1, 2):
        in_group = [a for a, g in zip(ages, groups, strict=True) if g == group]
        assert in_group == sorted(in_group, reverse=True)


def test_before_the_first_collection_the_page_says_so() -> None:
    dom = parse(render_status_page(None, version="0.1.0", metrics_path="/custom/metrics"))
    (message,) = dom.find_all("p", id="no-collection")
    assert message.text() == "No collection has completed yet."
    assert dom.find_all("section") == [] and dom.find_all("table") == []
    assert dom.find_all("a", id="metrics-link")[0].attrs["href"] == "/custom/metrics"


def test_metrics_path_is_escaped_in_the_link() -> None:
    dom = parse(render_status_page(None, version="v", metrics_path='/m"><x y="'))
    (link,) = dom.find_all("a", id="metrics-link")
    assert link.attrs["href"] == '/m"><x y="'
    assert dom.find_all("x") == []


def test_collection_without_accounts() -> None:
    dom = parse(
        render_status_page(Collection(time=NOW, accounts=()), version="v", metrics_path="/m")
    )
    assert "No accounts are configured." in dom.text()


# ---------------------------------------------------------------------------------------------
# The real page: the exporter in --demo mode, loaded in headless Chromium, checked against /metrics.

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# The README's screenshot; the test rewrites it only when asked to, so that a test run leaves the
# working tree clean: AMS_EXPORTER_UPDATE_DOCS=1 ./scripts/test -k chromium
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "status-page.png"
UPDATE_DOCS = os.environ.get("AMS_EXPORTER_UPDATE_DOCS") == "1"
WINDOW = (1600, 1000)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


@pytest.fixture(scope="module")
def demo_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The exporter's --demo on a loopback port; yields its base URL."""
    argv = [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", "127.0.0.1:0"]
    with Child(argv, tmp_path_factory.mktemp("demo"), "exporter") as exporter:
        host, port = exporter.listening_address(timeout=30)
        base = f"http://{host}:{port}"
        exporter.wait_until(
            lambda: _healthy(f"{base}/healthz"), what="/healthz to answer 200", timeout=30
        )
        assert http_get(f"{base}/healthz")[0] == 200, "the demo exporter did not answer /healthz"
        yield base


def _healthy(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def chromium(url: str, *extra: str) -> str:
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (Debian package chromium; ./scripts/test installs it)"
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode("utf-8")


def metric_samples(text: str) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_demo_status_page_in_chromium_matches_metrics(demo_exporter: str, tmp_path: Path) -> None:
    screenshot = DOCS_SCREENSHOT if UPDATE_DOCS else tmp_path / "status-page.png"
    # The page shows the latest collection; this scrape makes it, and nothing else collects
    # before Chromium loads the page, so both show the same collection.
    status, text = http_get(f"{demo_exporter}/metrics")
    assert status == 200
    samples = metric_samples(text)
    dom = parse(chromium(f"{demo_exporter}/", "--dump-dom"))
    screenshot.unlink(missing_ok=True)
    chromium(
        f"{demo_exporter}/", f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}"
    )

    def by_job(name: str) -> dict[str, float]:
        return {s.labels["job_id"]: s.value for s in samples.get(name, [])}

    states = {s.labels["job_id"]: s for s in samples["ams_job_state"] if s.value == 1}
    assert len(states) >= 10, "the demo should export a living set of jobs"
    rows = job_rows(dom, "demo")
    assert {r.attrs["data-job-id"] for r in rows} == set(states)
    age, queued, running = (
        by_job(f"ams_job_{m}_seconds") for m in ("age", "queued_duration", "running_duration")
    )
    progress = by_job("ams_job_progress_ratio")
    codes: dict[str, list[tuple[str, str]]] = {}
    for sample in samples.get("ams_job_error_info", []):
        codes.setdefault(sample.labels["job_id"], []).append(
            (sample.labels["task_id"], sample.labels["code"])
        )
    for row in rows:
        job_id = row.attrs["data-job-id"]
        metric = states[job_id]
        assert cell(row, "name").text() == metric.labels["job_name"]
        assert row.attrs["data-state"] == metric.labels["state"]
        (badge,) = [s for s in row.find_all("span") if "badge" in s.classes()]
        assert badge.text() == metric.labels["state"]
        assert float(cell(row, "age").attrs["data-seconds"]) == age[job_id]
        assert float(cell(row, "queued").attrs["data-seconds"]) == queued[job_id]
        assert float(cell(row, "running").attrs["data-seconds"]) == running[job_id]
        ratio = cell(row, "progress").attrs["data-ratio"]
        assert (float(ratio) if ratio else None) == progress.get(job_id)
        expected = sorted(f"{code} (task {task})" for task, code in codes.get(job_id, []))
        shown = cell(row, "codes").text()
        assert sorted(shown.split(", ") if shown else []) == expected

    (section,) = dom.find_all("section", **{"data-account": "demo"})
    (up,) = samples["ams_up"]
    assert section.attrs["data-up"] == str(int(up.value))
    chips = {
        s.attrs["data-state"]: float(s.attrs["data-count"])
        for s in section.find_all("span")
        if "data-count" in s.attrs
    }
    assert chips == {s.labels["state"]: s.value for s in samples["ams_jobs"]}
    (duration,) = samples["ams_collection_duration_seconds"]
    assert f"collection took {duration.value:.2f} s" in section.text()
    (last_success,) = samples["ams_last_success_timestamp_seconds"]
    shown_time = dt.datetime.fromtimestamp(last_success.value, tz=dt.timezone.utc)
    assert shown_time.strftime("%Y-%m-%d %H:%M:%S UTC") in section.text()

    assert png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 20_000, "a blank page compresses to almost nothing"
