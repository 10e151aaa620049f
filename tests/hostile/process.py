"""The real exporter as a subprocess: start it, wait until it listens, scrape it, stop it by PID.

Every answer the exporter gives and every byte it logs is handed to a recorder (the leak check).
"""

from __future__ import annotations

import gzip
import http.client
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.hostile.azure import SECRET, SECRET_VARIABLE
from tests.hostile.leaks import Outputs

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
# The level of a log line as promslog writes it in logfmt, the exporter's default format.
_LEVEL_RE = re.compile(r"^time=\S+ level=(DEBUG|INFO|WARN|ERROR) ")


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The exporter's environment: the secret variable set, nothing that redirects TLS trust."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REQUESTS_CA", "SSL_CERT", "CURL_CA", "HTTP_PROXY", "HTTPS_PROXY"))
        and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "*"
    env[SECRET_VARIABLE] = SECRET
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Response:
    """One answer of the exporter's HTTP side, body decoded from gzip if it was sent so."""

    status: int
    headers: dict[str, str]
    raw: bytes
    elapsed: float

    @property
    def text(self) -> str:
        body = self.raw
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Scrape:
    """A ``/metrics`` answer and its parsed samples."""

    response: Response
    samples: tuple[Sample, ...]

    def find(self, name: str, **labels: str) -> list[Sample]:
        """Samples named ``name`` whose labels include ``labels``."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The one value of ``name{labels}``; ``None`` when absent; fails when ambiguous."""
        found = self.find(name, **labels)
        assert len(found) <= 1, f"{len(found)} samples of {name}{labels}: {found}"
        return found[0].value if found else None

    def up(self, account: str) -> float | None:
        """``ams_up{account}``."""
        return self.value("ams_up", account=account)

    def job_ids(self, account: str) -> set[str]:
        """Ids of the jobs that have an ``ams_job_state`` series."""
        return {s.labels["job_id"] for s in self.find("ams_job_state", account=account)}


def parse_samples(text: str) -> tuple[Sample, ...]:
    """Every sample of a Prometheus text exposition (fails on a syntax error)."""
    return tuple(
        sample for family in text_string_to_metric_families(text) for sample in family.samples
    )


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ExporterProcess:
    """``python -m exporter --config.file F --web.listen-address 127.0.0.1:PORT --log.level debug``."""

    def __init__(
        self,
        folder: Path,
        config: Path,
        outputs: Outputs,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.config = config
        self._outputs = outputs
        self._args = list(args)
        self._env = environment(env)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout_file = folder / "stdout.txt"
        self.stderr_file = folder / "stderr.txt"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> ExporterProcess:
        """Start the process and wait (bounded) until ``/healthz`` answers."""
        self._outputs.watch(f"stderr of exporter {self.folder.name}", lambda: self.stderr)
        self._outputs.watch(f"stdout of exporter {self.folder.name}", lambda: self.stdout)
        for _ in range(3):  # another process may take the port between probe and bind
            self.port = free_port()
            command = [
                PYTHON,
                "-m",
                "exporter",
                "--config.file",
                str(self.config),
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                "--log.level",
                "debug",
                *self._args,
            ]
            with self.stdout_file.open("wb") as out, self.stderr_file.open("wb") as err:
                self._process = subprocess.Popen(
                    command, cwd=REPO, env=self._env, stdout=out, stderr=err
                )
            if self._wait_listening():
                return self
            if "cannot listen" not in self.stderr:
                break
        self.stop()
        raise AssertionError(f"the exporter did not start; its stderr:\n{self.stderr[-3000:]}")

    def _wait_listening(self) -> bool:
        ends = time.monotonic() + START_TIMEOUT
        while time.monotonic() < ends:
            assert self._process is not None
            if self._process.poll() is not None:
                return False
            try:
                if self.get("/healthz", timeout=2.0).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it does not stop in time."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_bytes().decode("utf-8", "replace")

    @property
    def stdout(self) -> str:
        return self.stdout_file.read_bytes().decode("utf-8", "replace")

    def log_lines(self, level_at_least: str = "DEBUG", containing: str = "") -> list[str]:
        """Log lines at ``level_at_least`` or above that contain ``containing``."""
        floor = LOG_LEVELS.index(level_at_least)
        found = []
        for line in self.stderr.splitlines():
            match = _LEVEL_RE.search(line)
            if match and LOG_LEVELS.index(match.group(1)) >= floor and containing in line:
                found.append(line)
        return found

    def proc_status(self, field: str) -> int:
        """A number from ``/proc/PID/status`` (``Threads``, ``VmRSS`` in kB)."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+)", text, re.MULTILINE)
        assert match, f"{field} not in /proc/{self.pid}/status"
        return int(match.group(1))

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, *, timeout: float = 30.0
    ) -> Response:
        """One GET on a fresh connection; the answer is recorded."""
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            answer = conn.getresponse()
            raw = answer.read()
            response = Response(
                answer.status,
                {k.lower(): v for k, v in answer.getheaders()},
                raw,
                time.monotonic() - started,
            )
        finally:
            conn.close()
        self._outputs.record(f"GET {path} of exporter {self.folder.name}", response.text)
        self._outputs.record(f"headers of GET {path}", repr(response.headers))
        return response

    def scrape(
        self,
        scrape_timeout: float | None = 10.0,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> Scrape:
        """``GET /metrics`` with Prometheus's scrape-timeout header; fails unless 200."""
        sent = dict(headers or {})
        if scrape_timeout is not None:
            sent["X-Prometheus-Scrape-Timeout-Seconds"] = f"{scrape_timeout:g}"
        response = self.get("/metrics", sent, timeout=timeout)
        assert response.status == 200, f"/metrics answered {response.status}: {response.text}"
        return Scrape(response, parse_samples(response.text))

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Poll ``/readyz`` (bounded) until it answers 200; whether it did."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if self.get("/readyz", timeout=5.0).status == 200:
                return True
            time.sleep(0.1)
        return False


@dataclass(frozen=True)
class Completed:
    """A finished (or killed) run of the exporter's command line."""

    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: Sequence[str],
    outputs: Outputs,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Completed:
    """Run ``python -m exporter ARGS`` to its end (killed by PID after ``timeout``); recorded."""
    started = time.monotonic()
    process = subprocess.Popen(
        [PYTHON, "-m", "exporter", *args],
        cwd=REPO,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    timed_out = False
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.kill(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=STOP_TIMEOUT)
    result = Completed(
        process.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        time.monotonic() - started,
        timed_out,
    )
    outputs.record(f"stdout of {' '.join(args)[:80]}", result.stdout)
    outputs.record(f"stderr of {' '.join(args)[:80]}", result.stderr)
    return result


def assert_sane_values(scrape: Scrape) -> None:
    """Every ``ams_`` value finite, ratios in 0..1, durations not negative."""
    for sample in scrape.samples:
        if not sample.name.startswith("ams_"):
            continue
        assert math.isfinite(sample.value), f"not finite: {sample}"
        if sample.name.endswith("_ratio"):
            assert 0.0 <= sample.value <= 1.0, f"ratio outside 0..1: {sample}"
        if "duration" in sample.name:
            assert sample.value >= 0.0, f"negative duration: {sample}"
