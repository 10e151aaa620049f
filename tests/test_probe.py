"""``/probe?account=NAME``: one account's series per scrape, as blackbox_exporter probes one target.

Two emulated accounts behind one exporter served on loopback (tests/support/harness.py). What a
probe must hold is derived from each emulator's own state (tests/support/expected.py), and a real
Prometheus scrapes the exporter with the relabelling of docs/multi-target.md, read from that doc.
"""

from __future__ import annotations

import concurrent.futures
import copy
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from ams_emulator import Emulator, Fault
from exporter.cli import DEFAULT_LISTEN_ADDRESS
from exporter.expose.contract import METRICS, Group
from tests.support.expected import STATE_NAMES, split_scope
from tests.support.harness import RunningExporter, Scrape, running_exporter
from tests.support.prom import running_prometheus

ACCOUNTS = ("a", "b")
DAY = 86400.0
DOC = Path(__file__).resolve().parent.parent / "docs" / "multi-target.md"
# The families of a probe: every section of the metric reference but the exporter's own.
ACCOUNT_FAMILIES = {metric.family_name for metric in METRICS if metric.group is not Group.EXPORTER}
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Emulator]]:
    with Emulator(jobs=40, seed=31, speed=0) as a, Emulator(jobs=40, seed=32, speed=0) as b:
        yield {"a": a, "b": b}


@pytest.fixture(scope="module")
def exporter(emulators: dict[str, Emulator]) -> Iterator[RunningExporter]:
    with running_exporter(emulators) as running:
        yield running


def _probe(exporter: RunningExporter, name: str) -> Scrape:
    return exporter.scrape(path=f"/probe?account={name}")


def _listed(text: str) -> list[str]:
    """The account names a refusal lists, in order."""
    head, _, names = text.partition("known accounts:\n")
    assert head, text
    return [line.strip() for line in names.splitlines()]


def _job_listings(emulator: Emulator, since: int) -> int:
    """Job listings the emulator answered after its first ``since`` requests."""
    return sum(
        1
        for r in emulator.request_log[since:]
        if r.api == "ams" and r.path.rstrip("/").endswith("/Jobs")
    )


@pytest.mark.parametrize("name", ACCOUNTS)
def test_a_probe_serves_its_accounts_series_alone(
    exporter: RunningExporter, emulators: dict[str, Emulator], name: str
) -> None:
    emulator = emulators[name]
    probe = _probe(exporter, name)
    served = emulator.request_log  # the probe's collection is over: nothing else asks meanwhile

    assert probe.status == 200
    assert {sample.labels.get("account") for sample in probe.samples} == {name}
    assert {family.name for family in text_string_to_metric_families(probe.text)} == (
        ACCOUNT_FAMILIES
    )
    assert probe.value("ams_up", account=name) == 1

    jobs = emulator.jobs()
    inside, outside = split_scope(jobs, emulator.clock.now().timestamp(), DAY)
    assert len(inside) + len(outside) == len(jobs), "a job ends on the edge of the window"
    states = {
        sample.labels["job_id"]: sample.labels["state"]
        for sample in probe.samples
        if sample.name == "ams_job_state" and sample.value == 1
    }
    assert states == {job.id: STATE_NAMES[job.state] for job in inside}
    counts = Counter(states.values())
    assert {
        sample.labels["state"]: sample.value
        for sample in probe.samples
        if sample.name == "ams_jobs"
    } == {state: counts[state] for state in STATE_NAMES}

    answered = Counter((record.api, str(record.status)) for record in served)
    assert {
        (sample.labels["api"], sample.labels["code"]): sample.value
        for sample in probe.samples
        if sample.name == "ams_api_requests_total"
    } == answered


def test_the_metrics_path_still_serves_every_account_and_the_exporters_own_series(
    exporter: RunningExporter,
) -> None:
    scrape = exporter.scrape()
    assert {sample.labels.get("account") for sample in scrape.samples} >= {*ACCOUNTS, None}
    assert scrape.values("ams_exporter_build_info")
    assert any(sample.name.startswith("process_") for sample in scrape.samples)


def test_an_unknown_account_is_refused_with_the_configured_names(
    exporter: RunningExporter,
) -> None:
    response = exporter.get("/probe?account=c")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("unknown account 'c'")
    assert _listed(response.text) == list(ACCOUNTS)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?",
        "?account=",
        "?account",
        "?Account=a",
        "?target=a",
        "?account=a&account=b",
        "?account=a&account=a",
        "?account=%zz",
        "?account=a%2",
        "?account=%ff",
        "?account=%c3%28",
        "?account=a%00",
        "?account=a;account=b",
        "?account=%20a",
        "?account=a+",
        "?account=" + "x" * 6000,
    ],
)
def test_a_probe_without_exactly_one_known_account_is_a_400(
    exporter: RunningExporter, query: str
) -> None:
    response = exporter.get("/probe" + query)
    assert response.status_code == 400, response.text
    assert _listed(response.text) == list(ACCOUNTS)


@pytest.mark.parametrize("query", ["?account=%61", "?account=a&module=x", "?x=1&account=b"])
def test_a_probe_decodes_its_parameter_and_ignores_others(
    exporter: RunningExporter, query: str
) -> None:
    response = exporter.get("/probe" + query)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_probe_answers_get_and_head_only(exporter: RunningExporter, method: str) -> None:
    response = exporter.session.request(method, exporter.url + "/probe?account=a", timeout=60)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    head = exporter.session.head(exporter.url + "/probe?account=a", timeout=60)
    assert head.status_code == 200
    assert head.content == b""


def test_a_probe_negotiates_and_compresses_as_the_metrics_path_does(
    exporter: RunningExporter,
) -> None:
    headers = {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}
    metrics = exporter.get("/metrics", headers=headers)
    probe = exporter.get("/probe?account=b", headers=headers)
    assert probe.status_code == 200
    for name in ("Content-Type", "Content-Encoding", "Vary"):
        assert probe.headers[name] == metrics.headers[name], name
    assert probe.headers["Content-Encoding"] == "gzip"
    assert probe.text.endswith("# EOF\n")
    families = list(openmetrics_families(probe.text))
    assert {family.name for family in families} == ACCOUNT_FAMILIES
    assert {sample.labels["account"] for family in families for sample in family.samples} == {"b"}


def test_a_probe_and_a_scrape_at_the_same_time_share_one_listing(
    exporter: RunningExporter, emulators: dict[str, Emulator]
) -> None:
    a, b = emulators["a"], emulators["b"]
    exporter.scrape()  # both accounts collected: what follows starts fresh collections
    since_a, since_b = len(a.request_log), len(b.request_log)
    a.faults.add(Fault(kind="latency", latency=0.5, path=r"/Jobs/?$"))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            probing = pool.submit(_probe, exporter, "a")
            scraping = pool.submit(exporter.scrape)
            probe, scrape = probing.result(timeout=60), scraping.result(timeout=60)
    finally:
        a.faults.clear()
    assert probe.value("ams_up", account="a") == 1
    assert scrape.value("ams_up", account="a") == 1
    assert scrape.value("ams_up", account="b") == 1
    assert _job_listings(a, since_a) == 1, "the probe and the scrape share a's collection"
    assert _job_listings(b, since_b) == 1


# -- A real Prometheus, configured as docs/multi-target.md says


def _documented_scrape_configs() -> list[dict[str, Any]]:
    """The ``scrape_configs`` entries of the doc's YAML blocks, in order."""
    blocks = re.findall(r"^```yaml\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)
    return [entry for block in blocks for entry in yaml.safe_load(block)["scrape_configs"]]


def _pointed_at(documented: dict[str, Any], address: str) -> dict[str, Any]:
    """A documented scrape config as the test runs it: its relabelling as written, but the test's
    accounts as targets, the exporter's real address and a 1 s interval."""
    config = copy.deepcopy(documented)
    config["static_configs"] = [{"targets": list(ACCOUNTS)}]
    config["scrape_interval"] = config["scrape_timeout"] = "1s"
    (to_exporter,) = [
        rule for rule in config["relabel_configs"] if rule.get("target_label") == "__address__"
    ]
    assert to_exporter["replacement"].rpartition(":")[2] == DEFAULT_LISTEN_ADDRESS.lstrip(":")
    to_exporter["replacement"] = address
    return config


def _shard(value: str, modulus: int) -> int:
    """Prometheus's ``hashmod``: the last 8 bytes of the MD5 of the value, big-endian, mod n."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


@pytest.mark.e2e
def test_prometheus_probes_each_account_as_its_own_target(exporter: RunningExporter) -> None:
    address = exporter.url.removeprefix("http://")
    plain, sharded = _documented_scrape_configs()
    assert plain["metrics_path"] == sharded["metrics_path"] == "/probe"
    assert plain["job_name"] != sharded["job_name"]
    (hashing,) = [rule for rule in sharded["relabel_configs"] if rule.get("action") == "hashmod"]
    (keeping,) = [rule for rule in sharded["relabel_configs"] if rule.get("action") == "keep"]
    kept = {
        name
        for name in ACCOUNTS
        if re.fullmatch(keeping["regex"], str(_shard(name, hashing["modulus"])))
    }
    assert kept and kept != set(ACCOUNTS), "the test's accounts should fall in different shards"

    configs = [_pointed_at(plain, address), _pointed_at(sharded, address)]
    with running_prometheus(configs) as prometheus:
        job = plain["job_name"]

        def both_up() -> dict[str, float] | None:
            ups = {
                sample["metric"]["instance"]: float(sample["value"][1])
                for sample in prometheus.query(f'up{{job="{job}"}}')
            }
            return ups if ups == {name: 1.0 for name in ACCOUNTS} else None

        prometheus.wait_for(both_up, what="up == 1 for each account", timeout=45)
        for name in ACCOUNTS:
            series = prometheus.wait_for_query(f'ams_up{{job="{job}",account="{name}"}} == 1')
            assert [sample["metric"]["instance"] for sample in series] == [name]
            assert not prometheus.query(
                f'ams_up{{job="{job}",instance="{name}",account!="{name}"}}'
            )
        assert not prometheus.query(f'ams_exporter_build_info{{job="{job}"}}')

        sharded_targets = [
            target
            for target in prometheus.targets()
            if target["labels"]["job"] == sharded["job_name"]
        ]
        assert {target["labels"]["instance"] for target in sharded_targets} == kept
        assert all(
            target["scrapeUrl"].startswith(f"http://{address}/probe?") for target in sharded_targets
        )


@pytest.mark.parametrize(
    "name",
    ["a%0D%0AX-Injected: 1", "a%0Aknown accounts:%0A  c", "%3Cscript%3E", "y" * 5000],
)
def test_a_refused_name_is_quoted_short_and_on_one_line(
    exporter: RunningExporter, name: str
) -> None:
    """What a client sent comes back escaped and cut: no header or listing can be forged."""
    response = exporter.get("/probe?account=" + name)
    assert response.status_code == 400
    assert "X-Injected" not in response.headers
    first, rest = response.text.split("\n", 1)
    assert len(first) < 300, "a long name is cut before it is quoted"
    assert rest == "known accounts:\n" + "".join(f"  {a}\n" for a in ACCOUNTS)
