"""Reliability against slow and odd upstreams: bounded scrapes, immediate recovery, no stale tokens.

Scenarios 8 (dripping headers) and 9 (tokens that expire at once) of the hostile suite.
"""

from __future__ import annotations

import pytest

from tests.hostile.azure import job, task, token_answer
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness
from tests.hostile.wire import Drip, Reply, Request

DRIP_EVERY = 0.5
DRIP_FOR = 20.0
SCRAPE_TIMEOUT = 5.0
# The scrape timeout plus a second for rendering, the network and a loaded machine.
ANSWER_WITHIN = SCRAPE_TIMEOUT + 1.0
# Scrapes while the upstream drips: more than the exporter has workers or connections to lose
# (each takes the 3 s account timeout, so all of them fall inside one 20 s drip).
SCRAPES_DURING_DRIP = 5


# ---------------------------------------------------------------------------------------------
# 8. Dripping status line and headers


@pytest.mark.parametrize("upstream", ["ams-jobs", "aad-token"])
def test_an_upstream_dripping_its_headers_costs_bounded_scrapes_and_recovery_is_immediate(
    lab: Lab, witness: Witness, upstream: str
) -> None:
    azure = lab.azure()
    account = lab.account(azure, "drip")
    account.jobs = [job(0), job(3)]
    dripping = {"on": upstream == "aad-token"}

    def jobs(request: Request) -> Reply:
        answer = azure.jobs_answer(account, request)
        return Drip(answer.wire(), DRIP_EVERY, DRIP_FOR) if dripping["on"] else answer

    def token(_request: Request, minted: str) -> Reply:
        answer = token_answer(account, minted)
        return Drip(answer.wire(), DRIP_EVERY, DRIP_FOR) if dripping["on"] else answer

    account.on_jobs, account.on_token = jobs, token
    exporter = lab.exporter([lab.entry(azure, account, timeout="3s")])
    if upstream == "ams-jobs":
        assert exporter.wait_ready(), "the exporter never collected the healthy upstream"
        dripping["on"] = True

    during = [exporter.scrape(SCRAPE_TIMEOUT) for _ in range(SCRAPES_DURING_DRIP)]
    dripping["on"] = False
    after = exporter.scrape(SCRAPE_TIMEOUT)

    kind = "jobs" if upstream == "ams-jobs" else "token"
    assert len(azure.requests_of(account, kind)) >= 2, f"the {kind} endpoint was hardly asked"
    for scrape in during:
        assert scrape.response.elapsed < ANSWER_WITHIN, f"{scrape.response.elapsed:.1f} s"
        assert scrape.up("drip") == 0
    assert after.response.elapsed < ANSWER_WITHIN, f"{after.response.elapsed:.1f} s"
    assert after.up("drip") == 1, "the first scrape after recovery did not see the upstream"
    assert after.job_ids("drip") == account.job_ids()
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 9. A token announced with expires_in 0 (or below) serves one collection


@pytest.mark.parametrize("expires_in", [0, -5, "0"], ids=["zero", "negative", "zero-string"])
def test_a_token_that_expires_at_once_is_used_for_one_collection_and_not_cached(
    lab: Lab, witness: Witness, expires_in: object
) -> None:
    azure = lab.azure()
    account = lab.account(azure, "instant", expires_in=expires_in)
    first, second = job(2), job(2)
    account.jobs = [first, second, job(0)]
    account.tasks = {first["Id"]: [task(progress=20)], second["Id"]: [task(progress=70)]}
    exporter = lab.exporter([lab.entry(azure, account)])
    exporter.wait_ready()
    tokens_before = len(azure.requests_of(account, "token"))
    ams_before = len(azure.requests_of(account, "ams"))

    scrapes = [exporter.scrape() for _ in range(3)]

    token_requests = len(azure.requests_of(account, "token")) - tokens_before
    ams = azure.requests_of(account, "ams")[ams_before:]
    assert [s.up("instant") for s in scrapes] == [1, 1, 1]
    assert len(ams) >= 9, f"expected a Jobs and two Tasks requests per collection, got {len(ams)}"
    assert all(r.bearer in account.minted for r in ams), "an AMS request carried no valid token"
    assert 2 <= token_requests <= 3, f"{token_requests} token requests for 3 collections"
    witness.assert_clean()
