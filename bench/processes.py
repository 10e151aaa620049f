"""The emulator, the exporter and the naive peer as child processes, and what ``/proc`` says about
them.

Each runs in their own interpreter so that neither shares a GIL with the other or with the harness,
as :class:`tests.support.process.Child`: their output goes to files in a scratch directory, and
start-up is detected by polling those files, bounded in time.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

import ams_emulator
from ams_emulator import Connection, account_entry
from tests.support.process import LISTENING, Child

STARTUP_SECONDS = 600.0  # a 100,000-job scenario takes a while to build on a busy machine
# How often the exporter's log is read for "listening on": its start-up collection begins right
# after that line, and the first scrape is meant to share it.
LISTENING_POLL_SECONDS = 0.002
ROOT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_SECRET_VARIABLE = "AMS_BENCH_CLIENT_SECRET"
_NAIVE_SECRET_VARIABLE = "AMS_NAIVE_CLIENT_SECRET"
_LISTENING = re.compile(LISTENING)


@dataclass(frozen=True)
class EmulatorInfo:
    """What the emulator printed: enough to configure an exporter or a baseline client."""

    endpoint: str
    authority_host: str
    tenant: str
    client_id: str
    client_secret: str
    resource: str
    ca_file: str


def _env() -> dict[str, str]:
    # The emulator's CA is passed explicitly; an inherited bundle must not replace it.
    return {
        k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }


def _field(text: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}:\s+(\S+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"the emulator did not print its {label}")
    return found.group(1)


def start_emulator(
    workdir: Path, jobs: int, latency: float, seed: int = 1
) -> tuple[Child, EmulatorInfo]:
    """An emulator with ``jobs`` jobs, its clock frozen so that every scrape sees the same data."""
    args = [sys.executable, "-m", "ams_emulator", "--jobs", str(jobs), "--seed", str(seed)]
    args += ["--speed", "0", "--port", "0", "--latency", repr(latency)]
    child = Child(args, workdir, f"emulator-{jobs}-{latency:g}", env=_env())
    try:
        child.wait_for(r"^Press Ctrl-C to stop\.", timeout=STARTUP_SECONDS)
        text = child.output()
        info = EmulatorInfo(
            endpoint=_field(text, "account endpoint"),
            authority_host=_field(text, "authority host"),
            tenant=_field(text, "tenant"),
            client_id=_field(text, "client id"),
            client_secret=_field(text, "client secret"),
            resource=_field(text, "resource"),
            ca_file=_field(text, "CA file"),
        )
    except BaseException:
        child.stop()
        raise
    return child, info


def exporter_config(info: EmulatorInfo, timeout: float) -> str:
    """A config with one account, ``bench``, exporting every in-scope job of the emulator."""
    connection = Connection(
        endpoint=info.endpoint,
        authority_host=info.authority_host,
        resource=info.resource,
        tenant=info.tenant,
        client_id=info.client_id,
        ca_file=info.ca_file,
    )
    entry = account_entry(
        "bench",
        connection,
        secret_variable=_SECRET_VARIABLE,
        timeout=f"{timeout:g}s",
        jobs={"max_jobs": 10000000},
    )
    return ams_emulator.exporter_config(entry)


def start_exporter(workdir: Path, info: EmulatorInfo, timeout: float) -> tuple[Child, str]:
    """``ams-exporter`` serving on loopback; returns it and its base URL once it listens.

    Its log is read every :data:`LISTENING_POLL_SECONDS`, so that a scrape sent on return joins
    the start-up collection, which begins when the exporter logs that it listens.
    """
    config = workdir / "exporter.yml"
    config.write_text(exporter_config(info, timeout))
    args = [sys.executable, "-m", "exporter", "--config.file", str(config)]
    args += ["--web.listen-address", "127.0.0.1:0", "--log.level", "info"]
    env = {**_env(), _SECRET_VARIABLE: info.client_secret}
    return _listening(Child(args, workdir, "exporter", env=env), LISTENING_POLL_SECONDS)


def start_naive(workdir: Path, info: EmulatorInfo, timeout: float) -> tuple[Child, str]:
    """The naive peer (:mod:`bench.naive`) on loopback; the secret goes in its environment."""
    args = [sys.executable, "-m", "bench.naive", "--endpoint", info.endpoint]
    args += ["--authority-host", info.authority_host, "--tenant", info.tenant]
    args += ["--client-id", info.client_id, "--resource", info.resource, "--ca-file", info.ca_file]
    args += ["--secret-variable", _NAIVE_SECRET_VARIABLE, "--timeout", f"{timeout:g}"]
    env = {**_env(), _NAIVE_SECRET_VARIABLE: info.client_secret}
    return _listening(Child(args, workdir, "naive", env=env, cwd=ROOT), 0.1)


def _listening(child: Child, interval: float) -> tuple[Child, str]:
    def address() -> re.Match[str] | None:
        return _LISTENING.search(child.output("stderr"))

    try:
        found = child.wait_until(
            address, what="'listening on' on its stderr", timeout=STARTUP_SECONDS, interval=interval
        )
    except BaseException:
        child.stop()
        raise
    return child, f"http://{found.group(1)}:{found.group(2)}"


def wait_ready(exporter: Child, session: requests.Session, url: str, timeout: float) -> None:
    """Wait until the exporter's start-up collection succeeded (``/readyz`` answers 200)."""
    exporter.wait_until(
        lambda: session.get(url + "/readyz", timeout=timeout).status_code == 200,
        what="/readyz to answer 200",
        timeout=timeout,
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of all threads of ``pid`` (resolution: one clock tick)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """The peak resident set size of ``pid`` so far (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
