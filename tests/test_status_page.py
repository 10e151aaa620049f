"""The status page rendered from a hand-built collection, read back with ``html.parser``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

from exporter.ams.model import Job, JobState, Task
from exporter.collection import AccountResult, Collection
from exporter.status_page import STATE_COLOURS, render_status_page

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
    assert bar.children[0].attrs["style"] == "width:42.0%"
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


def test_active_jobs_come_first(dom: Node) -> None:
    states = [r.attrs["data-state"] for r in job_rows(dom, "prod <west>")]
    finals = {"Finished", "Error", "Canceled"}
    first_final = next(i for i, s in enumerate(states) if s in finals)
    assert all(s not in finals for s in states[:first_final])
    assert all(s in finals for s in states[first_final:])


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
