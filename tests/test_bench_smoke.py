"""The benchmark harness runs end to end at a tiny size and writes a complete result.

Only the shape and the plausibility of the result are checked; timings are never asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import report
from bench.scrape import main


def test_the_harness_writes_a_complete_result_and_the_doc_section(tmp_path: Path):
    output = tmp_path / "result.json"
    doc = tmp_path / "performance.md"
    doc.write_text(
        f"# Performance\n\nprose stays\n\n{report.BEGIN}\nold table\n{report.END}\n\nend\n"
    )
    argv = ["--sizes", "200", "--latencies", "0", "--repeat", "1", "--timeout", "60"]
    assert main([*argv, "--output", str(output), "--doc", str(doc)]) == 0

    document = json.loads(output.read_text())
    assert document["command"] == "python -m bench.scrape " + " ".join(
        [*argv, "--output", str(output), "--doc", str(doc)]
    )
    assert document["machine"]["logical_cpus"] >= 1
    (result,) = document["results"]
    assert (result["jobs"], result["latency_ms"]) == (200, 0)
    assert 27 <= result["in_scope_jobs"] <= 30  # 5 % active, 10 % ended in the last 24 h
    baseline, exporter = result["baseline"], result["exporter"]
    assert baseline["requests"] == result["expected_requests"] >= 1
    assert exporter["requests_per_scrape"] == result["expected_requests"]
    assert exporter["first_collection_requests"] >= exporter["requests_per_scrape"]
    assert baseline["wall_seconds"] > 0 and exporter["wall_seconds"] > 0
    assert exporter["cpu_seconds"] >= 0 and exporter["peak_rss_bytes"] > 10 * 1024 * 1024
    assert exporter["series"] > 7 * result["in_scope_jobs"]
    assert exporter["exposition_bytes"] > 100 * exporter["series"] / 2
    render = result["render"]
    assert render["series"] > 0 and render["wall_seconds"] > 0
    assert {target["target"] for target in document["targets"]} >= {"requests = needed"}

    text = doc.read_text()
    assert "prose stays" in text and text.endswith("\nend\n")
    assert "old table" not in text
    assert f"| 200 | {result['in_scope_jobs']} | 0 ms |" in text
