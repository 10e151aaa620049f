"""Broken HTTP from AMS: every fault costs its account one collection, nothing more.

Scenarios of our own beyond the listed ones: lying ``Content-Length``, broken chunking, HTTP/1.0
without a length, a gzip bomb, a 100 MB body, resets, silence, garbage status lines, too many headers,
deeply nested JSON, and a legacy root that redirects to itself. One exporter collects an account
per fault; the module's fixture scrapes twice while the faults last, then once after they stop.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.hostile.azure import ODATA_JSON, Account, HostileAzure, job
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness
from tests.hostile.process import ExporterProcess, Scrape, assert_sane_values
from tests.hostile.wire import Answer, Flood, Raw, Reply, Request, Reset, Silence

SCRAPE_TIMEOUT = 5.0
ANSWER_WITHIN = SCRAPE_TIMEOUT + 1.0
MAX_RSS_KB = 600 * 1024
BOMB_BYTES = 256 * 2**20
FLOOD_BYTES = 100 * 2**20
FLOOD_START = b'{"value":['


def _head(*headers: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return ("\r\n".join([status, f"Content-Type: {ODATA_JSON}", *headers]) + "\r\n\r\n").encode()


def _gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * 2**20
    parts = [packer.compress(b'{"value":[')]
    parts += [packer.compress(block) for _ in range(BOMB_BYTES // len(block))]
    parts.append(packer.compress(b"]}") + packer.flush())
    return b"".join(parts)


Fault = Callable[[bytes], Reply]
"""Given the healthy body, the broken reply."""

FAULTS: dict[str, Fault] = {
    "content-length-longer-than-body": lambda body: Raw(
        _head(f"Content-Length: {len(body) + 5000}") + body
    ),
    "content-length-shorter-than-body": lambda body: Answer(
        200, body, (("Content-Type", ODATA_JSON), ("Content-Length", str(len(body) // 2)))
    ),
    "chunk-size-not-hex": lambda body: Raw(
        _head("Transfer-Encoding: chunked") + b"zz\r\n" + body + b"\r\n0\r\n\r\n"
    ),
    "chunked-without-last-chunk": lambda body: Raw(
        _head("Transfer-Encoding: chunked") + b"%x\r\n%s\r\n" % (len(body), body)
    ),
    "garbage-status-line": lambda body: Raw(b"HTTP/1.1 abc Whatever\r\n\r\n" + body),
    "not-http-at-all": lambda body: Raw(b"\x16\x03\x01 SSH-2.0-OpenSSH_9.6\r\n" + body),
    "too-many-headers": lambda body: Raw(
        _head(*(f"X-Header-{i}: {i}" for i in range(500)), f"Content-Length: {len(body)}") + body
    ),
    "endless-header-line": lambda body: Raw(_head()[:-2] + b"X-Long: " + b"a" * 300_000),
    "connection-reset": lambda _body: Reset(),
    "silence": lambda _body: Silence(30.0),
    "gzip-bomb": lambda _body: Answer(
        200, _bomb(), (("Content-Type", ODATA_JSON), ("Content-Encoding", "gzip"))
    ),
    "100-mb-body": lambda _body: Flood(
        _head(f"Content-Length: {len(FLOOD_START) + FLOOD_BYTES}") + FLOOD_START,
        b" " * 2**20,
        FLOOD_BYTES,
    ),
    "deeply-nested-json": lambda _body: Answer(
        200, b'{"value":' + b"[" * 200_000 + b"]" * 200_000 + b"}", (("Content-Type", ODATA_JSON),)
    ),
    "gzip-header-on-plain-body": lambda body: Answer(
        200, body, (("Content-Type", ODATA_JSON), ("Content-Encoding", "gzip"))
    ),
}

# Faults after which the answer is still a valid HTTP response with the jobs.
READABLE = {
    "http-1.0-without-length": lambda body: Raw(
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body
    ),
    "gzip-encoded-as-announced": lambda body: Answer(
        200, gzip.compress(body), (("Content-Type", ODATA_JSON), ("Content-Encoding", "gzip"))
    ),
    "chunked-in-one-byte-chunks": lambda body: Raw(
        _head("Transfer-Encoding: chunked")
        + b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body)))
        + b"0\r\n\r\n"
    ),
}

_BOMB: list[bytes] = []


def _bomb() -> bytes:
    if not _BOMB:
        _BOMB.append(_gzip_bomb())
    return _BOMB[0]


@dataclass
class Run:
    exporter: ExporterProcess
    azure: HostileAzure
    accounts: dict[str, Account]
    during: list[Scrape]
    after: Scrape
    rss_kb: int
    loop_requests_per_collection: float


def _faulty(azure: HostileAzure, account: Account, fault: Fault, healthy: dict[str, bool]) -> None:
    def jobs(request: Request) -> Reply:
        answer = azure.jobs_answer(account, request)
        return answer if healthy["on"] else fault(answer.body)

    account.on_jobs = jobs


@pytest.fixture(scope="module")
def run(module_lab: Lab) -> Iterator[Run]:
    azure = module_lab.azure()
    healthy = {"on": False}
    accounts: dict[str, Account] = {}
    for name, fault in {**FAULTS, **READABLE}.items():
        account = module_lab.account(azure, name)
        account.jobs = [job(0), job(3)]
        _faulty(azure, account, fault, healthy)
        accounts[name] = account
    looping = module_lab.azure("loop")
    loop = module_lab.account(looping, "redirect-loop")
    loop.jobs = [job(0)]
    looping.add(loop, ams_prefix="")
    root = looping.base() + "/"
    looping.root = lambda _request: Answer(301, b"moved", (("Location", root),))
    entries = [
        module_lab.entry(azure, account, timeout="4s", jobs={"tasks": False})
        for account in accounts.values()
    ]
    entries.append(module_lab.entry(looping, loop, endpoint=root, timeout="4s"))
    accounts["redirect-loop"] = loop
    exporter = module_lab.exporter(entries)
    during = [exporter.scrape(SCRAPE_TIMEOUT) for _ in range(2)]
    rss = exporter.proc_status("VmRSS")
    roots = len([r for r in looping.server.requests if r.path == "/"])
    healthy["on"] = True
    after = exporter.scrape(SCRAPE_TIMEOUT)
    yield Run(exporter, azure, accounts, during, after, rss, roots / 3)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_broken_response_costs_its_account_one_collection(
    run: Run, witness: Witness, fault: str
) -> None:
    account = run.accounts[fault]

    assert run.azure.requests_of(account, "jobs"), "the fault was never served"
    assert [s.up(fault) for s in run.during] == [0, 0]
    for scrape in run.during:
        assert scrape.response.elapsed < ANSWER_WITHIN, f"{scrape.response.elapsed:.1f} s"
        assert_sane_values(scrape)
    assert run.after.up(fault) == 1, "the account did not recover with the upstream"
    assert run.after.job_ids(fault) == account.job_ids()
    assert run.exporter.alive()
    assert "Traceback" not in run.exporter.stderr
    witness.assert_clean()


@pytest.mark.parametrize("variant", sorted(READABLE))
def test_an_odd_but_valid_response_is_read(run: Run, witness: Witness, variant: str) -> None:
    account = run.accounts[variant]

    assert [s.up(variant) for s in run.during] == [1, 1]
    assert run.during[-1].job_ids(variant) == account.job_ids()
    witness.assert_clean()


def test_hostile_bodies_do_not_blow_up_the_exporter_memory(run: Run, witness: Witness) -> None:
    assert run.rss_kb < MAX_RSS_KB, f"resident set {run.rss_kb // 1024} MiB after the bombs"
    witness.assert_clean()


def test_a_legacy_root_redirecting_to_itself_is_a_loop_not_a_hang(
    run: Run, witness: Witness
) -> None:
    assert [s.up("redirect-loop") for s in run.during] == [0, 0]
    assert run.loop_requests_per_collection <= 5, "the exporter kept following the loop"
    loop_lines = [
        line
        for line in run.exporter.log_lines("DEBUG")
        if "account redirect-loop" in line and "loop" in line.replace("redirect-loop", "")
    ]
    assert loop_lines, "no log line says the endpoint redirects in a loop"
    witness.assert_clean()
