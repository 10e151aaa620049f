"""The Grafana dashboard: generated from code, structurally sound, and querying only real metrics.

Metric names are extracted with a real PromQL parser (PyPI ``promql-parser``, the Rust
``promql-parser`` crate's bindings) after the Grafana variables have been given values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from exporter.expose.contract import METRICS, Kind
from tests.support.dashboard import DASHBOARD, ROOT, load, queries

RULES = ROOT / "prometheus" / "rules.yml"
ALERTS = ROOT / "prometheus" / "alerts.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's own variables; everything else a query uses must be a dashboard variable.
BUILTINS = {
    "__range",
    "__rate_interval",
    "__interval",
    "__from",
    "__to",
    "__url_time_range",
    "__data",
}
# Values that make every expression plain PromQL, for parsing (the live test uses real ones).
SAMPLE_VALUES = {
    "datasource": "prometheus",
    "account": ".*",
    "group": ".*",
    "job_name": ".*",
    "job_id": "nb:jid:UUID:00000000-0000-0000-0000-000000000000",
    "scrape_timeout": "15",
    "__range": "6h",
    "__rate_interval": "2m",
    "__from:date:seconds": "1700000000",
}


builder = load("build_dashboard")


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return result


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return list(queries.iter_panels(model))


def walk(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a JSON document."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads, from the parsed syntax tree."""
    found: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.add(node.name)
            found.update(m.value for m in node.matchers.matchers if m.name == "__name__")
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def exposed_names() -> set[str]:
    """The names the exporter's samples carry: a histogram's are its ``_bucket``, ``_sum`` and
    ``_count`` series."""
    names = {m.name for m in METRICS}
    histograms = (m.name for m in METRICS if m.kind is Kind.HISTOGRAM)
    return names | {f"{name}_{part}" for name in histograms for part in ("bucket", "sum", "count")}


def alert_reads() -> set[str]:
    """The metric and recorded names the alerting rules read."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    exprs = (rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule)
    return {name for expr in exprs for name in metric_names(expr)}


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def rule_reads() -> set[str]:
    """The recorded names other recording rules read (a rule may be a building block)."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    exprs = (rule["expr"] for group in groups for rule in group["rules"] if "record" in rule)
    return {name for expr in exprs for name in metric_names(expr)} & recorded_names()


def test_committed_files_are_what_the_generator_produces() -> None:
    generated = builder.outputs()
    assert set(generated) == {DASHBOARD, ROOT / "docs" / "dashboard.md"}
    for path, text in generated.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run .venv/bin/python grafana/build_dashboard.py"
        )


def test_generator_check_mode_reports_stale_files(tmp_path: Path, monkeypatch: Any) -> None:
    json_path, docs_path = tmp_path / "ams-jobs.json", tmp_path / "dashboard.md"
    json_path.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(builder, "OUTPUT", json_path)
    monkeypatch.setattr(builder, "DOCS", docs_path)
    assert builder.main(["--check"]) == 1
    assert builder.main([]) == 0
    assert builder.main(["--check"]) == 0
    assert json.loads(json_path.read_text(encoding="utf-8"))["uid"] == "ams-jobs"
    docs_path.write_text(
        docs_path.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8"
    )
    assert builder.main(["--check"]) == 1


def test_docs_list_every_panel_with_its_queries(model: dict[str, Any]) -> None:
    docs = (ROOT / "docs" / "dashboard.md").read_text(encoding="utf-8")
    for panel in panels(model):
        assert panel["title"] in docs
        for target in panel.get("targets", []):
            assert f"```promql\n{target['expr']}\n```" in docs, (panel["title"], target["refId"])


def test_dashboard_is_a_grafana_11_model_with_import_inputs(model: dict[str, Any]) -> None:
    assert model["uid"] == "ams-jobs"
    assert model["title"]
    assert {"ams", "ams-exporter"} <= set(model["tags"])
    assert model["schemaVersion"] >= 39  # Grafana 11.0 writes 39, 11.6 writes 41
    assert model["id"] is None
    assert model["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes ams-exporter",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    grafana = [r for r in model["__requires"] if r["type"] == "grafana"]
    assert grafana and grafana[0]["version"].startswith("11.")
    required_panels = {r["id"] for r in model["__requires"] if r["type"] == "panel"}
    assert required_panels == {p["type"] for p in panels(model) if p["type"] != "row"}


def test_dashboard_links_to_the_runbooks(model: dict[str, Any]) -> None:
    urls = [link["url"] for link in model["links"]]
    assert any(url.endswith("/docs/runbooks.md") for url in urls)
    assert (ROOT / "docs" / "runbooks.md").exists() or pytest.fail("docs/runbooks.md is missing")


def test_panel_ids_and_titles_are_unique(model: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(model)]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels(model)]
    assert len(titles) == len(set(titles))


def test_panels_do_not_overlap_and_fit_the_grid(model: dict[str, Any]) -> None:
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels(model):
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0, panel["title"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = occupied.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r} at {x},{y}"


def test_overview_row_fits_a_1080p_screen(model: dict[str, Any]) -> None:
    """Grafana rows are 30 px; a 1080-pixel screen shows about 25 of them under the header."""
    rows = [p for p in model["panels"] if p["type"] == "row"]
    assert rows[0]["title"] == "Overview" and rows[0]["gridPos"]["y"] == 0
    overview = [
        p
        for p in model["panels"]
        if p["type"] != "row" and p["gridPos"]["y"] < rows[1]["gridPos"]["y"]
    ]
    assert len(overview) >= 8
    assert max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in overview) <= 12


def test_every_panel_and_query_uses_the_datasource_variable(model: dict[str, Any]) -> None:
    for panel in panels(model):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, (panel["title"], target["refId"])
    for annotation in model["annotations"]["list"]:
        assert annotation["datasource"] == DATASOURCE
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE


def test_no_datasource_uid_is_hard_coded(model: dict[str, Any]) -> None:
    datasource_refs = [
        (path, value)
        for path, value in walk(model)
        if path.endswith(".datasource") and isinstance(value, dict)
    ]
    assert len(datasource_refs) > 20
    for path, ref in datasource_refs:
        assert ref == DATASOURCE, path
    # The datasource variable starts on whatever the import dialog chose for DS_PROMETHEUS.
    ds_variable = next(v for v in model["templating"]["list"] if v["type"] == "datasource")
    assert ds_variable["name"] == "datasource" and ds_variable["query"] == "prometheus"
    assert ds_variable["current"]["value"] == "${DS_PROMETHEUS}"


def test_variables_are_the_issue_s_filters(model: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in model["templating"]["list"]}
    account = variables["account"]
    assert account["type"] == "query" and account["multi"] and account["includeAll"]
    assert account["allValue"] == ".*"
    assert variables["job_name"]["type"] == "textbox" and variables["job_name"]["query"] == ".*"


def test_every_variable_is_used_and_every_used_variable_exists(model: dict[str, Any]) -> None:
    defined = {v["name"] for v in model["templating"]["list"]}
    used: set[str] = set()
    for path, value in walk(model):
        if isinstance(value, str) and ".templating" not in path and "__inputs" not in path:
            used |= queries.variables_in(value)
    assert defined <= used, f"unused variables: {defined - used}"
    assert used - defined <= BUILTINS, f"undefined variables: {used - defined - BUILTINS}"


def test_every_query_parses_and_reads_only_contract_or_recorded_metrics(
    model: dict[str, Any],
) -> None:
    allowed = exposed_names() | recorded_names()
    every = list(queries.iter_queries(model))
    assert len(every) > 25
    seen: set[str] = set()
    for query in every:
        names = metric_names(queries.substitute(query.expr, SAMPLE_VALUES))
        assert names or query.expr == "vector($scrape_timeout)", query.where
        assert names <= allowed, f"{query.where}: unknown metrics {sorted(names - allowed)}"
        seen |= names
    # No recording rule is dead: the dashboard shows those it was designed around, the alerts
    # and other rules read the others.
    unread = recorded_names() - seen - alert_reads() - rule_reads()
    assert not unread, sorted(unread)


def test_metric_name_extraction_sees_through_functions_and_name_matchers() -> None:
    expr = (
        'sum by (a) (rate(ams_api_requests_total{code="500"}[5m])) / on () group_left '
        'max_over_time({__name__="ams_up"}[1h:1m]) unless label_replace(not_a_metric, "a", "b", "c", "d")'
    )
    assert metric_names(expr) == {"ams_api_requests_total", "ams_up", "not_a_metric"}
    # Label values and strings are not metric names, even when they look like one.
    assert metric_names('ams_jobs{state="ams_up"}') == {"ams_jobs"}
    with pytest.raises(ValueError):
        metric_names("sum(ams_jobs) offset 1m)")


def test_substitution_gives_grafana_s_formats_and_refuses_unknown_variables() -> None:
    assert (
        queries.substitute('x{a=~"$account"}[$__range] > ${__from:date:seconds}', SAMPLE_VALUES)
        == 'x{a=~".*"}[6h] > 1700000000'
    )
    with pytest.raises(KeyError):
        queries.substitute('x{a=~"$nope"}', SAMPLE_VALUES)


def test_states_have_the_status_page_colours(model: dict[str, Any]) -> None:
    from exporter.ams.model import JobState
    from exporter.web.status_page import STATE_COLOURS

    running = next(p for p in panels(model) if p["title"] == "Running jobs")
    state_override = next(
        o for o in running["fieldConfig"]["overrides"] if o["matcher"]["options"] == "State"
    )
    mapping = next(p["value"] for p in state_override["properties"] if p["id"] == "mappings")
    options = mapping[0]["options"]
    assert {name: o["color"] for name, o in options.items()} == {
        s.label: STATE_COLOURS[s] for s in JobState
    }
    assert STATE_COLOURS[JobState.ERROR] != STATE_COLOURS[JobState.FINISHED]


def test_error_annotation_marks_jobs_entering_error(model: dict[str, Any]) -> None:
    (annotation,) = model["annotations"]["list"]
    assert annotation["enable"] is True
    assert "ams_job_state" in metric_names(queries.substitute(annotation["expr"], SAMPLE_VALUES))
    assert "{{job_name}}" in annotation["titleFormat"]


# The annotation before the fix: it compared with the raw series one step earlier, so after a gap
# (a failed collection, an exporter restart) every job in Error was marked again.
OLD_ERROR_ANNOTATION = (
    'max by (account, job_id, job_name) (ams_job_state{account=~".*", job_name=~"(?s:.*)",'
    ' state="Error"}) == 1 unless on (account, job_id) max by (account, job_id, job_name)'
    ' (ams_job_state{account=~".*", job_name=~"(?s:.*)", state="Error"} offset 1m) == 1'
)


def error_state(job_id: str, name: str, instance: str, values: str) -> dict[str, str]:
    labels = f'account="a", job_id="{job_id}", job_name="{name}", state="Error"'
    return {
        "series": f'ams_job_state{{{labels}, instance="{instance}", job="ams"}}',
        "values": values,
    }


def annotation_unit_test(expr: str) -> dict[str, Any]:
    """A promtool unit test of the annotation query, evaluated at each 1m step as Grafana does.

    j1 is Processing, enters Error at 5m; every series of the job is marked stale at 11m (an
    exporter restart, or a failed collection) and is back at 14m, still in Error. Both exporter
    replicas (e1, e2) report it. j2 appears at 8m already in Error. j3 never fails.
    """
    one = '{account="a", job_id="j1", job_name="one"}'
    two = '{account="a", job_id="j2", job_name="two"}'
    expected = {4: [], 5: [one], 6: [], 7: [], 8: [two], 9: [], 11: [], 12: [], 13: [], 14: []}
    expected |= {15: [], 30: []}
    return {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    error_state("j1", "one", "e1", "0x4 1x5 stale _ _ 1x20"),
                    error_state("j1", "one", "e2", "0x4 1x5 stale _ _ 1x20"),
                    error_state("j2", "two", "e1", "_ _ _ _ _ _ _ _ 1x20"),
                    error_state("j3", "three", "e1", "0x30"),
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": f"{minute}m",
                        "exp_samples": [{"labels": labels, "value": 1} for labels in marks],
                    }
                    for minute, marks in expected.items()
                ],
            }
        ],
    }


def run_annotation_unit_test(expr: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the Debian package 'prometheus'"
    path = tmp_path / "dashboard_annotation_test.yml"
    path.write_text(yaml.safe_dump(annotation_unit_test(expr), sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_error_annotation_marks_a_job_once_despite_gaps_in_its_series(
    model: dict[str, Any], tmp_path: Path
) -> None:
    """The committed annotation, evaluated by Prometheus's engine (promtool) on series with a stale
    gap: one mark when the job enters Error, none when its series come back after the gap."""
    (annotation,) = model["annotations"]["list"]
    assert annotation["step"] == "1m"
    expr = queries.substitute(annotation["expr"], {"account": ".*", "job_name": ".*"})
    result = run_annotation_unit_test(expr, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_annotation_unit_test_catches_the_old_query(tmp_path: Path) -> None:
    """The same unit test fails for the old query, which marks j1 again when the gap ends."""
    result = run_annotation_unit_test(OLD_ERROR_ANNOTATION, tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "time: 14m" in output
    assert 'job_id="j1"' in output


def test_the_issue_s_panels_are_present(model: dict[str, Any]) -> None:
    by_title = {p["title"]: p for p in panels(model)}
    expected_types = {
        "Queued now": "stat",
        "Scheduled now": "stat",
        "Processing now": "stat",
        "Canceling now": "stat",
        "Failed in range": "stat",
        "Finished in range": "stat",
        "Collection per account": "stat",
        "Last successful collection": "stat",
        "Jobs per state": "timeseries",
        "Running jobs": "table",
        "Task progress of processing jobs": "bargauge",
        "Failed jobs": "table",
        "Error ratio (1 h window)": "timeseries",
        "Oldest queued job": "timeseries",
        "Queued durations (in-scope jobs)": "histogram",
        "Running durations of finished jobs": "histogram",
        "Collection duration vs scrape timeout": "timeseries",
        "AMS API requests by status code": "timeseries",
        "Dropped jobs (max_jobs)": "timeseries",
        "Jobs ended per hour by state": "timeseries",
        "Error ratio by group (1 h window)": "timeseries",
        "Top error codes": "bargauge",
        "Job duration heatmap": "heatmap",
        "Queue wait heatmap": "heatmap",
        "Job duration p50 / p95 by group (1 h window)": "timeseries",
        "Job duration p50 / p95 by final state (1 h window)": "timeseries",
        "Queue wait p50 / p95 by group (1 h window)": "timeseries",
        "Failures by media processor": "bargauge",
        "Failed tasks per media processor (1 h window)": "timeseries",
        "Encoding reserved units": "timeseries",
        "Encoding saturation": "timeseries",
    }
    assert {t: by_title[t]["type"] for t in expected_types if t in by_title} == expected_types
    states = by_title["Jobs per state"]
    assert states["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    running = by_title["Running jobs"]
    assert running["options"]["sortBy"] == [{"displayName": "Running", "desc": True}]
    name_links = [
        p["value"]
        for o in running["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "Name"
        for p in o["properties"]
        if p["id"] == "links"
    ]
    assert name_links and "var-job_id=${__data.fields.job_id}" in name_links[0][0]["url"]


HISTORY_TITLES = (
    "Jobs ended per hour by state",
    "Error ratio by group (1 h window)",
    "Top error codes",
    "Job duration heatmap",
    "Queue wait heatmap",
    "Job duration p50 / p95 by group (1 h window)",
    "Job duration p50 / p95 by final state (1 h window)",
    "Queue wait p50 / p95 by group (1 h window)",
)
# A history series' own labels: an HA replica's duplicate differs from it only in target labels.
HISTORY_LABELS = {
    "ams_jobs_ended_total": {"account", "group", "state"},
    "ams_job_errors_total": {"account", "group", "code"},
    "ams_job_duration_seconds_bucket": {"account", "group", "state", "le"},
    "ams_job_queue_wait_seconds_bucket": {"account", "group", "le"},
}


def history_row(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels between the History row and the next row."""
    rows = [p for p in model["panels"] if p["type"] == "row"]
    (start,) = [r["gridPos"]["y"] for r in rows if r["title"] == "History"]
    end = min((r["gridPos"]["y"] for r in rows if r["gridPos"]["y"] > start), default=10**6)
    return [p for p in model["panels"] if p["type"] != "row" and start < p["gridPos"]["y"] < end]


def history_reads(expr: str) -> tuple[list[str], list[str]]:
    """The history metrics ``expr`` reads: every selector of one, and those read the HA-safe way
    (``max by (every label of the series) (rate|increase(selector[window]))``)."""
    every: list[str] = []
    collapsed: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name in HISTORY_LABELS:
            every.append(node.name)
        if (
            isinstance(node, promql_parser.AggregateExpr)
            and str(node.op) == "max"
            and node.modifier is not None
            and str(node.modifier.type) == "AggModifierType.By"
            and isinstance(node.expr, promql_parser.Call)
            and node.expr.func.name in {"rate", "increase"}
        ):
            (argument,) = node.expr.args
            assert isinstance(argument, promql_parser.MatrixSelector), expr
            name = argument.vector_selector.name
            if set(node.modifier.labels) == HISTORY_LABELS.get(name):
                collapsed.append(name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return every, collapsed


def test_history_row_has_the_issue_s_panels(model: dict[str, Any]) -> None:
    row = history_row(model)
    assert [p["title"] for p in row] == list(HISTORY_TITLES)
    group = next(v for v in model["templating"]["list"] if v["name"] == "group")
    assert group["type"] == "query" and group["multi"] and group["includeAll"]
    assert group["allValue"] == ".*"
    for panel in row:
        for target in panel["targets"]:
            assert 'group=~"$group"' in target["expr"], (panel["title"], target["refId"])


def test_history_queries_collapse_the_replicas_of_each_series_before_summing(
    model: dict[str, Any],
) -> None:
    """Two exporter replicas count the same jobs: each series' rate or increase is taken first,
    then the replicas' copies collapsed by a max that keeps all the series' own labels; never a
    rate of an aggregate (a subquery), never a sum over the copies. (The group variable only
    lists label values.)"""
    reads = 0
    for query in queries.iter_queries(model):
        if query.panel_id is None:
            continue
        expr = queries.substitute(query.expr, SAMPLE_VALUES)
        every, collapsed = history_reads(expr)
        assert every == collapsed, f"{query.where}: {expr}"
        reads += len(every)
    assert reads >= 3  # the heatmaps and the top error codes; the other panels read rules
    # The check itself: a sum of the replicas' increases, and an increase of a max, fail it.
    assert history_reads("sum by (state) (increase(ams_jobs_ended_total[1h]))") == (
        ["ams_jobs_ended_total"],
        [],
    )
    assert history_reads(
        "increase(max by (account, group, state) (ams_jobs_ended_total)[1h:1m])"
    ) == (["ams_jobs_ended_total"], [])


def test_history_heatmaps_show_the_buckets_with_exemplars(model: dict[str, Any]) -> None:
    by_title = {p["title"]: p for p in history_row(model)}
    for title in ("Job duration heatmap", "Queue wait heatmap"):
        heatmap = by_title[title]
        (target,) = heatmap["targets"]
        assert target["format"] == "heatmap" and target["exemplar"] is True, title
        assert "_bucket{" in target["expr"] and target["legendFormat"] == "{{le}}", title
        # The buckets as Prometheus has them (upper bounds), not recalculated by Grafana.
        assert heatmap["options"]["calculate"] is False, title
        assert heatmap["options"]["rowsFrame"]["layout"] == "le", title
    # Recorded series carry no exemplars: no query of one asks for them.
    recorded = recorded_names()
    for panel in panels(model):
        for target in panel.get("targets", []):
            names = metric_names(queries.substitute(target["expr"], SAMPLE_VALUES))
            if names & recorded:
                assert not target.get("exemplar"), (panel["title"], target["refId"])


def test_provisioning_matches_the_demo_stack() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = ROOT / "grafana" / "provisioning"

    (datasource,) = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]

    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "ams-exporter.yml").read_text(encoding="utf-8")
    )["providers"]
    assert provider["type"] == "file"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["./grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    assert grafana["image"].startswith("grafana/grafana:11.")


def test_single_value_panels_reduce_to_the_latest_value(model: dict[str, Any]) -> None:
    for panel in panels(model):
        if panel["type"] in {"stat", "bargauge"}:
            assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"], panel["title"]
        if panel["type"] in {"stat", "bargauge", "table", "histogram"}:
            # These show the state now: one instant evaluation, not a range of points.
            assert all(t["instant"] and not t["range"] for t in panel["targets"]), panel["title"]
        if panel["type"] == "table":
            assert all(t["format"] == "table" for t in panel["targets"]), panel["title"]
        if panel["type"] in {"timeseries", "state-timeline"}:
            assert all(t["range"] and not t["instant"] for t in panel["targets"]), panel["title"]


def query_of(panel: dict[str, Any], ref: str) -> str:
    (expr,) = [t["expr"] for t in panel["targets"] if t["refId"] == ref]
    return str(expr)


@pytest.mark.parametrize(
    ("title", "states"),
    [("Running jobs", "Queued|Scheduled|Processing|Canceling"), ("Failed jobs", "Error")],
)
def test_job_tables_show_each_job_s_media_processors_in_one_cell(
    model: dict[str, Any], title: str, states: str
) -> None:
    """The last query of a job table lists its jobs' processors, one series per job and processor;
    a groupBy on that query alone makes one row of it per job before the merge, so a job on two
    processors is one row with both names, and the organize step shows the column."""
    table = next(p for p in panels(model) if p["title"] == title)
    last = table["targets"][-1]
    expr = queries.substitute(last["expr"], SAMPLE_VALUES)
    assert metric_names(expr) == {"ams_task_info", "ams_job_state"}
    assert last["expr"].startswith("max by (account, job_id, media_processor) (ams_task_info{")
    # The processors of the table's own jobs only: a job missing from A would get a row of its own.
    assert f'state=~"{states}"' in last["expr"]
    group, merge, organize = table["transformations"]
    assert group["id"] == "groupBy" and group["filter"] == {
        "id": "byRefId",
        "options": last["refId"],
    }
    fields = group["options"]["fields"]
    assert {name: f["operation"] for name, f in fields.items()} == {
        "account": "groupby",
        "job_id": "groupby",
        "media_processor": "aggregate",
    }
    assert fields["media_processor"]["aggregations"] == ["uniqueValues"]
    assert merge["id"] == "merge" and organize["id"] == "organize"
    options = organize["options"]
    produced = builder.PROCESSORS_FIELD  # what Grafana's groupBy names the aggregated field
    assert produced == "media_processor (uniqueValues)"
    assert options["renameByName"][produced] == "Media processor"
    assert produced not in options["excludeByName"]
    assert produced in options["indexByName"]


def test_failed_jobs_table_names_its_end_time_column_however_grafana_names_the_value(
    model: dict[str, Any],
) -> None:
    """Grafana calls A's value "Value #A" when several queries returned data and "Value" when A
    alone did (no processors: jobs.tasks false); both are the Ended column the table sorts by."""
    failed = next(p for p in panels(model) if p["title"] == "Failed jobs")
    organize = failed["transformations"][-1]["options"]
    assert organize["renameByName"]["Value #A"] == organize["renameByName"]["Value"] == "Ended"
    assert failed["options"]["sortBy"] == [{"displayName": "Ended", "desc": True}]
    running = next(p for p in panels(model) if p["title"] == "Running jobs")
    assert running["transformations"][-1]["options"]["excludeByName"]["Value #A"] is True


def test_failures_by_media_processor_count_tasks_of_jobs_in_error_once_across_replicas(
    model: dict[str, Any],
) -> None:
    panel = next(p for p in panels(model) if p["title"] == "Failures by media processor")
    (target,) = panel["targets"]
    assert target["legendFormat"] == "{{media_processor}}" and target["instant"]
    expr = target["expr"]
    # One series per task (its identity and its processor), whatever the scraping target.
    assert "count by (media_processor) (max by (account, job_id, task_id, media_processor)" in expr
    assert 'state=~"Error"' in expr


def test_capacity_panels_sit_beside_the_queue_and_read_units_and_the_saturation_rule(
    model: dict[str, Any],
) -> None:
    by_title = {p["title"]: p for p in panels(model)}
    queue, units, saturation = (
        by_title[t] for t in ("Oldest queued job", "Encoding reserved units", "Encoding saturation")
    )
    assert queue["gridPos"]["y"] == units["gridPos"]["y"] == saturation["gridPos"]["y"]
    assert queue["gridPos"]["x"] + queue["gridPos"]["w"] == units["gridPos"]["x"]
    assert units["gridPos"]["x"] + units["gridPos"]["w"] == saturation["gridPos"]["x"]
    assert query_of(units, "A").startswith("max by (account, type) (ams_encoding_reserved_units{")
    assert query_of(units, "B").startswith("max by (account) (ams_encoding_reserved_units_max{")
    assert [t["legendFormat"] for t in units["targets"]] == [
        "{{account}} {{type}}",
        "{{account}} max",
    ]
    assert query_of(saturation, "A") == 'account:ams_encoding_saturation:ratio{account=~"$account"}'
    defaults = saturation["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert defaults["thresholds"]["steps"][-1] == {"value": 1, "color": "red"}
    # The line at 1 stays in view when the ratio is low; a ratio above 1 is not cut off.
    assert defaults["custom"]["axisSoftMax"] == 1 and "max" not in defaults
    assert defaults["unit"] == "percentunit"
