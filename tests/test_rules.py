"""The Prometheus rule files, their promtool unit tests, and the conventions they follow.

promtool (Debian package `prometheus`) validates the files and runs the unit tests in
tests/prometheus/; the rest of this module checks what promtool does not: the mixin conventions
(severity, summary, description, runbook_url), that every alert and recording rule has unit tests,
that rules collapse duplicate series before comparing or aggregating, and that docs/alerting.md
lists the same thresholds as the files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules.yml"
ALERTS = ROOT / "prometheus" / "alerts.yml"
CONFIG = ROOT / "prometheus" / "prometheus.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ALERTING_DOC = ROOT / "docs" / "alerting.md"
UNIT_TESTS = sorted((ROOT / "tests" / "prometheus").glob("*.yml"))
RUNBOOK_BASE = "https://github.com/ams-exporter/ams-exporter/blob/main/docs/runbooks.md"
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: install the Debian package 'prometheus' (scripts/test does)"
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


ALERT_RULES = {rule["alert"]: rule for rule in rules_of(ALERTS)}
RECORDING_RULES = {rule["record"]: rule for rule in rules_of(RULES)}


def unit_test_cases() -> list[dict[str, Any]]:
    return [case for path in UNIT_TESTS for case in load(path)["tests"]]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, - for spaces."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {github_anchor(heading) for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M)}


def runbook_anchors() -> set[str]:
    return anchors(RUNBOOKS)


# promtool itself


def test_promtool_accepts_both_rule_files() -> None:
    result = run_promtool("check", "rules", RULES, ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RECORDING_RULES)} rules found" in result.stdout
    assert f"SUCCESS: {len(ALERT_RULES)} rules found" in result.stdout


def test_example_config_is_valid_and_loads_both_rule_files() -> None:
    result = run_promtool("check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    config = load(CONFIG)
    assert config["rule_files"] == ["rules.yml", "alerts.yml"]
    (ams,) = [job for job in config["scrape_configs"] if job["job_name"] == "ams"]
    assert ams["static_configs"] == [{"targets": ["localhost:10267"]}]
    assert "alerting" not in config


def test_there_are_unit_test_files() -> None:
    assert len(UNIT_TESTS) >= 3, UNIT_TESTS


@pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    result = run_promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda p: p.name)
def test_unit_tests_load_the_real_rule_files(path: Path) -> None:
    test = load(path)
    loaded = {(path.parent / name).resolve() for name in test["rule_files"]}
    assert loaded <= {RULES, ALERTS}
    assert RULES in loaded
    if len(loaded) > 1:
        # Without an explicit order promtool evaluates the files' groups in a varying order, and
        # alerts reading recording rules see this or the previous evaluation's value at random.
        groups = [
            group["name"] for rule_file in (RULES, ALERTS) for group in load(rule_file)["groups"]
        ]
        assert test.get("group_eval_order") == groups


def test_a_wrong_expectation_makes_promtool_fail(tmp_path: Path) -> None:
    """The unit tests can fail: the same file with one expected value changed is rejected."""
    source = ROOT / "tests" / "prometheus" / "recording_rules_test.yml"
    text = source.read_text(encoding="utf-8")
    original = 'account:ams_jobs_active:sum{account="a"}\', value: 7}'
    assert original in text
    broken = tmp_path / source.name
    broken.write_text(
        text.replace(original, original.replace("value: 7", "value: 14")).replace(
            "../../prometheus/", str(ROOT / "prometheus") + "/"
        ),
        encoding="utf-8",
    )
    result = run_promtool("test", "rules", broken)
    assert result.returncode != 0
    assert "account:ams_jobs_active:sum" in result.stdout + result.stderr


# Conventions of the rule files


def test_group_names_are_prefixed_ams() -> None:
    for path in (RULES, ALERTS):
        for group in load(path)["groups"]:
            assert group["name"].startswith("AMS"), group["name"]


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_alert_follows_the_mixin_conventions(name: str) -> None:
    rule = ALERT_RULES[name]
    assert re.fullmatch(r"AMS(?:[A-Z][a-z]+)+", name)
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    summary = annotations["summary"]
    assert summary.endswith(".") and summary.count(". ") == 0, summary
    assert "{{" not in summary, "the summary is a fixed sentence; details go in the description"
    description = annotations["description"]
    assert "$labels." in description or "$value" in description
    assert set(annotations) == {"summary", "description", "runbook_url"}


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_alert_links_an_existing_runbook_section(name: str) -> None:
    url = ALERT_RULES[name]["annotations"]["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == RUNBOOK_BASE
    assert anchor == github_anchor(name)
    assert anchor in runbook_anchors(), f"docs/runbooks.md has no section '{name}'"


@pytest.mark.parametrize("doc", [RUNBOOKS, ALERTING_DOC], ids=lambda p: p.name)
def test_links_between_the_alerting_docs_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
        if target.startswith("http"):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: broken link {target}"
        if anchor:
            assert anchor in anchors(linked), f"{doc.name}: no section for {target}"


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_descriptions_name_what_the_alert_is_about(name: str) -> None:
    """Per-job alerts name the account, job name and job id; account alerts name the account,
    group alerts the account and the group."""
    rule = ALERT_RULES[name]
    description = rule["annotations"]["description"]
    flat = " ".join(rule["expr"].split())
    grouping = re.match(r"(?:\( )?max by \(([a-z_, ]+)\)", flat)
    # Else the alert keeps the labels of the recording rule it compares: its level names them.
    recorded = re.match(r"\(? ?([a-z_]+):ams_", flat)
    if grouping:
        labels = {label.strip() for label in grouping.group(1).split(",")}
    else:
        labels = set(recorded.group(1).split("_")) if recorded else set()
    if name == "AMSExporterDown":
        labels = {"instance", "job"}
    assert labels, name
    for label in labels:
        assert f"$labels.{label}" in description, (name, label)


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_durations_in_descriptions_are_human_readable(name: str) -> None:
    rule = ALERT_RULES[name]
    description = rule["annotations"]["description"]
    if "seconds" in rule["expr"]:
        assert "$value | humanizeDuration" in description, name


# The labels a recorded series may be aggregated by: its level names them, joined by `_`.
LEVEL_LABELS = ("account", "group", "state", "media_processor")
LEVEL = re.compile("(?:{0})(?:_(?:{0}))*".format("|".join(LEVEL_LABELS)))


@pytest.mark.parametrize("name", sorted(RECORDING_RULES))
def test_recording_rule_names_are_level_metric_operations(name: str) -> None:
    level, metric, operations = name.split(":")
    assert LEVEL.fullmatch(level), level
    assert metric.startswith("ams_")
    assert re.fullmatch(r"[a-z0-9]+(?:_[a-z0-9]+)*", operations)


RAW_METRIC = re.compile(r"(?<![\w:])(ams_[a-z_]+)\b")
# A gauge is read directly or through last_over_time/changes; a counter or histogram bucket
# through increase/rate, per series, before the max (never increase() of a max).
RANGE_FUNCTIONS = ("changes(", "last_over_time(", "increase(", "rate(")
DEDUPLICATED = re.compile(
    r"max by \([a-z_, ]+\) \( ?(?:" + "|".join(map(re.escape, RANGE_FUNCTIONS)) + ")?$"
)


def all_rules() -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], r["expr"]) for r in rules_of(RULES) + rules_of(ALERTS)]


@pytest.mark.parametrize(("name", "expr"), all_rules(), ids=[n for n, _ in all_rules()])
def test_every_exporter_series_is_deduplicated_before_use(name: str, expr: str) -> None:
    """Each selector of an ams_ metric sits directly inside `max by(...)`, so the same series from
    two exporter replicas or two scrape configs counts once."""
    flat = " ".join(expr.split())
    found = list(RAW_METRIC.finditer(flat))
    for match in found:
        before = flat[: match.start()]
        assert DEDUPLICATED.search(before), f"{name}: {match.group(1)} is used without max by()"
    if not found:
        assert re.search(r"\b[a-z_]+:ams_", flat) or name == "AMSExporterDown", name


@pytest.mark.parametrize(("name", "expr"), all_rules(), ids=[n for n, _ in all_rules()])
def test_job_series_are_bridged_over_failed_collections(name: str, expr: str) -> None:
    """Per-job series and per-account counts vanish while a collection fails; the rules read them
    through last_over_time (or a range function) so one failed scrape does not flap the alerts."""
    flat = " ".join(expr.split())
    for match in RAW_METRIC.finditer(flat):
        if match.group(1).startswith("ams_job"):
            before = flat[: match.start()]
            assert before.endswith(RANGE_FUNCTIONS), (name, match.group(1))


# Unit-test coverage


def alert_cases(name: str) -> list[list[dict[str, Any]]]:
    """The cases for one alert, grouped by unit test (one input series set each)."""
    groups = [
        [case for case in test.get("alert_rule_test", []) if case["alertname"] == name]
        for test in unit_test_cases()
    ]
    return [group for group in groups if group]


def silent_fire_silent(cases: list[dict[str, Any]]) -> bool:
    """Silent before it fires, fires, and silent again afterwards (resolved), on the same input."""
    timeline = sorted((duration(case["eval_time"]), bool(case.get("exp_alerts"))) for case in cases)
    firing = [time for time, fires in timeline if fires]
    silent = [time for time, fires in timeline if not fires]
    return bool(firing and silent) and min(silent) < min(firing) and max(silent) > min(firing)


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_every_alert_has_negative_positive_and_resolved_cases(name: str) -> None:
    groups = alert_cases(name)
    assert any(silent_fire_silent(cases) for cases in groups), (
        f"{name}: no unit test that is silent before the alert fires, fires, then resolves"
    )
    annotation_keys = set(ALERT_RULES[name]["annotations"])
    for case in (case for cases in groups for case in cases):
        for alert in case.get("exp_alerts") or []:
            assert alert["exp_labels"]["severity"] == ALERT_RULES[name]["labels"]["severity"]
            assert set(alert["exp_annotations"]) == annotation_keys, (name, case["eval_time"])


@pytest.mark.parametrize("name", sorted(RECORDING_RULES))
def test_every_recording_rule_has_a_unit_test(name: str) -> None:
    token = re.compile(rf"(?<![\w:]){re.escape(name)}(?![\w:])")
    cases = [
        case
        for test in unit_test_cases()
        for case in test.get("promql_expr_test", [])
        if token.search(case["expr"])
    ]
    assert any(case.get("exp_samples") for case in cases), f"{name}: no promql_expr_test"


def duration(text: str) -> int:
    """Seconds in a Prometheus duration such as 1h30m or 45s."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)([smhd])", text)
    assert "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


# docs/alerting.md is where thresholds are documented: it must agree with the files.


def alerting_table() -> dict[str, list[str]]:
    rows = {}
    for line in ALERTING_DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] in ALERT_RULES:
            rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_alerting_doc_lists_the_alert_with_its_severity_and_for(name: str) -> None:
    row = alerting_table().get(name)
    assert row, f"docs/alerting.md has no table row for {name}"
    rule = ALERT_RULES[name]
    assert rule["labels"]["severity"] in row
    assert rule.get("for", "0m") in row


# Each threshold is stated three times: in the alert's expr (or its `for:`), in the row of the
# table in docs/alerting.md and in the description. The tests below read the thresholds out of the
# expr with a small parser for the forms the rules use, and check that the table row and the
# description (as written, and as rendered in the promtool cases) state exactly those.
#
# Forms read from the expr:
# - `> N`, `> N * M` or `>= N` after a selector: seconds if the metric name says `seconds`, a ratio
#   if it says `ratio`, else a count (`> 0` means "any" and is not a threshold);
# - `> on (...) group_left (...) N * <recorded>`: a multiple of a recorded value;
# - the window of `changes(...[W])` and an `offset W`: durations (how long nothing changed);
# - with none of these, a non-zero `for:` is the threshold.
# The texts may also state the `for:` and the windows of the recording rules the expr reads (the
# `1h` of `...:increase1h`, the `7d` of `...:p95_7d`), but need not.
# How the texts state them: durations as `30 min`/`6 h`/`7 days` in the table, `30m`/`6h`/`7d` in
# descriptions and `30 minutes`/`6 hours`/`7 days` in summaries; ratios as `20 %`; multiples as
# `3 times`; counts as `at least 5` (>=) or `more than 5` (>).

COMPARISON = re.compile(r"(>=|>) *(\d+(?:\.\d+)?(?: *\* *\d+(?:\.\d+)?)*)")
MULTIPLE = re.compile(r"> on \([a-z_, ]+\) group_left(?: \([a-z_, ]*\))? (\d+(?:\.\d+)?) \*")
RECORDED_WINDOW = re.compile(r"\b[a-z_]+:ams_[a-z0-9_]+:[a-z0-9_]*?(\d+[smhd])\b")
SERIES_NAME = re.compile(r"[a-z_]+:ams_[a-z0-9_]+:[a-z0-9_]+|ams_[a-z_]+|\bup\b")
WINDOW = re.compile(r"changes\([^()\[]*\[(\w+)\]|offset (\w+)")

Threshold = tuple[str, float, str]  # (kind, value, comparison); the comparison only for counts


def threshold(kind: str, value: float, op: str = "") -> Threshold:
    return (kind, value, op if kind == "count" else "")


def expr_thresholds(expr: str) -> set[Threshold]:
    flat = " ".join(expr.split())
    found = set()
    for match in COMPARISON.finditer(flat):
        value = 1.0
        for factor in match.group(2).split("*"):
            value *= float(factor)
        if value == 0:
            continue
        names = SERIES_NAME.findall(flat[: match.start()])
        assert names, f"no series before {match.group(0)!r} in {flat}"
        kind = (
            "duration" if "seconds" in names[-1] else "ratio" if "ratio" in names[-1] else "count"
        )
        found.add(threshold(kind, value, match.group(1)))
    for match in MULTIPLE.finditer(flat):
        found.add(threshold("multiple", float(match.group(1))))
    for match in WINDOW.finditer(flat):
        found.add(threshold("duration", duration(match.group(1) or match.group(2))))
    return found


def rule_thresholds(rule: dict[str, Any]) -> tuple[set[Threshold], set[Threshold]]:
    """The thresholds of an alert (from its expr, else its `for:`), and what its texts may also
    mention (its `for:`, the windows of the recording rules it reads)."""
    for_seconds = duration(rule.get("for", "0m"))
    for_: set[Threshold] = {threshold("duration", for_seconds)} if for_seconds else set()
    windows = {
        threshold("duration", duration(window))
        for window in RECORDED_WINDOW.findall(" ".join(rule["expr"].split()))
    }
    return expr_thresholds(rule["expr"]) or for_, for_ | windows


DURATION_TEXT = {
    "table": re.compile(r"\b(\d+) (min|h|days?)\b"),
    "description": re.compile(r"\b(\d+)([mhd])\b"),
    "summary": re.compile(r"\b(\d+) (minute|hour|day)s?\b"),
}
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def stated_thresholds(text: str, style: str) -> set[Threshold]:
    """The thresholds a text states, in the spelling of ``style`` (table, description, summary)."""
    text = re.sub(r"\{\{.*?\}\}", "", text, flags=re.S)  # template actions are not text
    found = set()
    for number, unit in DURATION_TEXT[style].findall(text):
        found.add(threshold("duration", int(number) * UNIT_SECONDS[unit[0]]))
    for number in re.findall(r"\b(\d+(?:\.\d+)?) ?%", text):
        found.add(threshold("ratio", round(float(number) / 100, 6)))
    for number in re.findall(r"\b(\d+(?:\.\d+)?) times\b", text):
        found.add(threshold("multiple", float(number)))
    for words, number in re.findall(
        r"\b(at least|more than) (\d+)\b(?! ?(?:%|min|h\b|m\b|d\b|days?\b|times\b))", text
    ):
        found.add(threshold("count", float(number), ">=" if words == "at least" else ">"))
    return found


def rendered_descriptions(name: str) -> list[str]:
    return [
        alert["exp_annotations"]["description"]
        for cases in alert_cases(name)
        for case in cases
        for alert in case.get("exp_alerts") or []
    ]


def threshold_problems(
    name: str, rule: dict[str, Any], row: list[str], rendered: list[str]
) -> list[str]:
    """Where the table row (its "fires when" cell) or the description disagree with the rule."""
    thresholds, for_ = rule_thresholds(rule)
    allowed = thresholds | for_
    problems = []
    fires_when = row[2]
    table = stated_thresholds(fires_when, "table")
    # A threshold carried by `for:` is checked in the table's `for` column.
    if not thresholds <= table | for_:
        problems.append(f"{name}: table row states {table}, expr has {thresholds}")
    if not table <= allowed:
        problems.append(f"{name}: table row states {table - allowed}, not in the rule")
    description = rule["annotations"]["description"]
    stated = stated_thresholds(description, "description")
    if not thresholds <= stated:
        problems.append(f"{name}: description states {stated}, rule has {thresholds}")
    if not stated <= allowed:
        problems.append(f"{name}: description states {stated - allowed}, not in the rule")
    summary = stated_thresholds(rule["annotations"]["summary"], "summary")
    if not summary <= allowed:
        problems.append(f"{name}: summary states {summary - allowed}, not in the rule")
    for text in rendered:
        if not thresholds <= stated_thresholds(text, "description"):
            problems.append(f"{name}: rendered description {text!r} lacks {thresholds}")
    return problems


def test_the_threshold_parser_reads_the_forms_the_rules_use() -> None:
    assert expr_thresholds(ALERT_RULES["AMSJobErrorRateHigh"]["expr"]) == {
        ("ratio", 0.2, ""),
        ("count", 5.0, ">="),
    }
    assert expr_thresholds(ALERT_RULES["AMSJobNoProgress"]["expr"]) == {("duration", 1800.0, "")}
    assert expr_thresholds(ALERT_RULES["AMSJobRunningTooLong"]["expr"]) == {
        ("duration", 21600.0, "")
    }
    assert expr_thresholds(ALERT_RULES["AMSJobsDropped"]["expr"]) == set()
    assert rule_thresholds(ALERT_RULES["AMSJobStuckCanceling"])[0] == {("duration", 900.0, "")}
    assert rule_thresholds(ALERT_RULES["AMSJobFailed"]) == (set(), set())
    assert expr_thresholds(ALERT_RULES["AMSJobRunningLongerThanUsual"]["expr"]) == {
        ("multiple", 3.0, ""),
        ("count", 20.0, ">="),
    }
    # The windows of the recording rules read may be stated; they are no thresholds.
    assert rule_thresholds(ALERT_RULES["AMSGroupFailingOnly"]) == (set(), {("duration", 21600, "")})
    assert rule_thresholds(ALERT_RULES["AMSJobRunningLongerThanUsual"])[1] == {
        ("duration", 300, ""),
        ("duration", 604800, ""),
    }
    text = "more than 20 % of at least 5 ended, more than 3 jobs, for 30 min or 6 h"
    assert stated_thresholds(text, "table") == {
        ("ratio", 0.2, ""),
        ("count", 5.0, ">="),
        ("count", 3.0, ">"),
        ("duration", 1800, ""),
        ("duration", 21600, ""),
    }
    assert stated_thresholds('{{ query "x[5m]" }} (threshold 15m) 6h', "description") == {
        ("duration", 900, ""),
        ("duration", 21600, ""),
    }
    assert stated_thresholds("more than 3 times the p95 over 7 days, of at least 20", "table") == {
        ("multiple", 3.0, ""),
        ("duration", 604800, ""),
        ("count", 20.0, ">="),
    }


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_table_and_description_state_the_threshold_of_the_expr(name: str) -> None:
    row = alerting_table().get(name)
    assert row, f"docs/alerting.md has no table row for {name}"
    assert threshold_problems(name, ALERT_RULES[name], row, rendered_descriptions(name)) == []


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("AMSJobStuckQueued", "> 30 * 60", "> 45 * 60"),
        ("AMSJobNoProgress", "offset 30m", "offset 20m"),
        ("AMSJobRunningTooLong", "> 6 * 3600", "> 8 * 3600"),
        ("AMSJobErrorRateHigh", "> 0.2", "> 0.25"),
        ("AMSJobErrorRateHigh", ">= 5", ">= 10"),
        ("AMSAccountDataStale", "> 15 * 60", "> 20 * 60"),
        ("AMSJobsDropped", "> 0", "> 10"),
        ("AMSGroupErrorRateHigh", "> 0.2", "> 0.25"),
        ("AMSGroupErrorRateHigh", ">= 5", ">= 10"),
        ("AMSGroupFailingOnly", ":increase6h", ":increase1h"),
        ("AMSJobRunningLongerThanUsual", "3 * account_group", "4 * account_group"),
        ("AMSJobRunningLongerThanUsual", ">= 20", ">= 50"),
        ("AMSJobRunningLongerThanUsual", "7d", "1d"),
        ("AMSEncodingCapacitySaturated", ">= 1", ">= 0.9"),
    ],
)
def test_changing_a_threshold_only_in_the_expr_is_caught(name: str, old: str, new: str) -> None:
    rule = dict(ALERT_RULES[name])
    assert old in rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    assert threshold_problems(name, rule, alerting_table()[name], rendered_descriptions(name))


def test_changing_a_threshold_only_in_the_table_or_description_is_caught() -> None:
    name = "AMSJobStuckQueued"
    rule, row = ALERT_RULES[name], alerting_table()[name]
    edited_row = [cell.replace("30 min", "45 min") for cell in row]
    assert threshold_problems(name, rule, edited_row, []) != []
    description = rule["annotations"]["description"].replace("30m", "45m")
    annotations = {**rule["annotations"], "description": description}
    assert threshold_problems(name, {**rule, "annotations": annotations}, row, []) != []
    # A threshold carried by `for:` must be in the description too.
    name = "AMSJobStuckCanceling"
    rule, row = ALERT_RULES[name], alerting_table()[name]
    assert threshold_problems(name, rule, row, []) == []
    assert threshold_problems(name, {**rule, "for": "20m"}, row, []) != []
