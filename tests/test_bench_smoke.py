"""The benchmark harness runs end to end at a tiny size and writes a complete result.

Only the shape and the plausibility of the result are checked; timings are never asserted.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from bench import report
from bench.scrape import DEFAULT_OUTPUT, QUICK_OUTPUT, build_parser, main, output_path

ROOT = Path(__file__).resolve().parent.parent


def test_the_harness_writes_a_complete_result_and_the_doc_section(tmp_path: Path):
    output = tmp_path / "result.json"
    doc = tmp_path / "performance.md"
    doc.write_text(
        f"# Performance\n\nprose stays\n\n{report.BEGIN}\nold table\n{report.END}\n\nend\n"
    )
    argv = ["--sizes", "200", "--latencies", "0", "--repeat", "1", "--naive-repeat", "1"]
    argv += ["--timeout", "60", "--no-profile"]
    assert main([*argv, "--output", str(output), "--doc", str(doc)]) == 0

    document = json.loads(output.read_text())
    assert document["command"] == "python -m bench.scrape " + " ".join(
        [*argv, "--output", str(output), "--doc", str(doc)]
    )
    assert document["machine"]["logical_cpus"] >= 1
    assert 0 <= document["load_average"]["min_1m"] <= document["load_average"]["max_1m"]
    (result,) = document["results"]
    assert (result["jobs"], result["latency_ms"], result["stress"]) == (200, 0, False)
    assert all(len(result["load_average"][when]) == 3 for when in ("start", "end"))
    assert 27 <= result["in_scope_jobs"] <= 30  # 5 % active, 10 % ended in the last 24 h

    baseline, exporter, naive = result["baseline"], result["exporter"], result["naive"]
    assert baseline["requests"] == result["expected_requests"] >= 1
    # A first collection is a full listing with the tasks of jobs in Error; later ones may list
    # less than everything, never more.
    first = exporter["first"]
    assert first["requests"] == result["expected_first_requests"] > result["expected_requests"]
    assert 1 <= exporter["requests_per_scrape"] <= result["expected_requests"]
    assert len(exporter["requests_per_scrape_all"]) == 2  # one identity, one gzip scrape
    assert first["wall_seconds"] > 0 and first["series"] > 7 * result["in_scope_jobs"]
    assert baseline["wall_seconds"] > 0 and exporter["wall_seconds"] > 0
    assert exporter["cpu_seconds"] >= 0 and exporter["peak_rss_bytes"] > 10 * 1024 * 1024
    assert exporter["series"] > 7 * result["in_scope_jobs"]
    assert exporter["exposition_bytes"] > 100 * exporter["series"] / 2
    coded = exporter["gzip"]
    assert 0 < coded["wire_bytes"] < exporter["exposition_bytes"] / 2
    assert coded["wall_seconds"] > 0 and coded["cpu_seconds"] >= 0
    assert [run["gzip"] for run in exporter["runs"]] == [False, True]

    # The naive peer lists what the baseline lists, with the same requests, in its own process.
    assert naive["requests_per_scrape"] == baseline["requests"]
    assert naive["series"] > 7 * result["in_scope_jobs"]
    assert naive["wall_seconds"] > 0 and naive["peak_rss_bytes"] > 10 * 1024 * 1024
    assert len(naive["runs"]) == 1 and result["naive_wall_ratio"] > 0

    render = result["render"]
    assert render["series"] > 0 and render["wall_seconds"] > 0
    assert render["first_wall_seconds"] > 0 and render["reference_wall_seconds"] > 0
    assert render["encoder_ratio"] > 0

    checks = {v["target"]: v["met"] for v in document["targets"]}
    assert checks["first collection: requests = needed (full listing)"] is True
    assert checks["steady state: requests ≤ needed"] is True

    text = doc.read_text()
    assert "prose stays" in text and text.endswith("\nend\n")
    assert "old table" not in text
    assert f"| 200 | {result['in_scope_jobs']} | 0 ms |" in text

    # Above --naive-max-jobs the tables say so instead of showing a number.
    skipped = copy.deepcopy(document)
    skipped["results"][0].update(naive=None, naive_wall_ratio=None, naive_cpu_ratio=None)
    assert "| not run |" in report.tables(skipped)


def test_a_quick_look_leaves_the_tracked_result_alone():
    assert output_path(build_parser().parse_args([])) == DEFAULT_OUTPUT
    assert output_path(build_parser().parse_args(["--no-doc"])) == QUICK_OUTPUT
    named = build_parser().parse_args(["--no-doc", "--output", "elsewhere.json"])
    assert output_path(named) == Path("elsewhere.json")
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert QUICK_OUTPUT.relative_to(ROOT).as_posix() in ignored
