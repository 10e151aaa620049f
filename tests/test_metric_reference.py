"""docs/metrics.md is generated from the metric table, and the exposition follows the table."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator
from exporter.expose.contract import METRICS, Kind, reference_markdown
from tests.support.harness import running_exporter

ROOT = Path(__file__).resolve().parent.parent


def test_committed_reference_matches_the_code():
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == reference_markdown(), (
        "docs/metrics.md is out of date: run `python -m exporter.expose.contract > docs/metrics.md`"
    )


def test_exposition_has_exactly_the_contract_with_its_types_and_labels():
    with Emulator(jobs=300, seed=12, speed=0) as emulator:
        with running_exporter({"a": emulator}) as exporter:
            text = exporter.scrape().text
    families = {
        f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("ams_")
    }
    expected = {metric.family_name: metric for metric in METRICS}
    assert set(families) == set(expected)
    for name, family in families.items():
        metric = expected[name]
        assert family.type == metric.kind.value
        assert family.documentation == metric.help
        for sample in family.samples:
            if metric.kind is Kind.HISTOGRAM and sample.name.endswith("_bucket"):
                assert set(sample.labels) == {*metric.labels, "le"}, (name, sample.labels)
            else:
                assert set(sample.labels) == set(metric.labels), (name, sample.labels)
            if metric.kind is Kind.COUNTER:
                assert sample.name == metric.name
            if metric.kind is Kind.HISTOGRAM:
                suffixes = ("_bucket", "_count", "_sum")
                assert sample.name in [metric.name + suffix for suffix in suffixes]
