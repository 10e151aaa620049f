"""A real Prometheus server for tests: started on a free loopback port, queried over its HTTP API.

``running_prometheus`` writes a configuration from the scrape configs and rule files it is given,
starts the ``prometheus`` binary (Debian package ``prometheus``) with a temporary data directory,
polls ``/-/ready`` until the server answers, and stops the process when the block ends. Every wait
is a poll bounded both in attempts and in time; nothing sleeps for a fixed delay before asserting.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

from tests.support.process import Child, WaitFailed, free_port, poll

T = TypeVar("T")

READY_TIMEOUT = 60.0
START_ATTEMPTS = 3


class PrometheusError(AssertionError):
    """Prometheus did not start or answered with an error (a condition that never held is a
    :class:`~tests.support.process.WaitFailed`)."""


def prometheus_binary() -> str:
    return _binary("prometheus")


def promtool_binary() -> str:
    return _binary("promtool")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusError(
            f"{name} not found: install the Debian package 'prometheus' (scripts/test does)"
        )
    return path


@dataclass
class PrometheusServer:
    """A running Prometheus; methods wrap its HTTP API (``/api/v1/...``)."""

    url: str
    child: Child
    config_file: Path
    data_dir: Path
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.child.process

    def log_tail(self, lines: int = 40) -> str:
        text = self.child.output("stdout") + self.child.output("stderr")
        return "prometheus log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; fails on an error status."""
        response = self.session.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"/api/v1/{path} {params}: {response.status_code} {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or at Unix time ``at``): the result samples, each with
        ``metric`` labels and ``value`` [time, string]."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr}: expected a vector, got {data['resultType']}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(
        self, expr: str, at: float | None = None
    ) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query as ``{sorted label pairs: value}``."""
        return {
            tuple(sorted(sample["metric"].items())): float(sample["value"][1])
            for sample in self.query(expr, at)
        }

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing), each with ``labels``, ``annotations``, ``state``."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def rule_groups(self) -> list[dict[str, Any]]:
        """Loaded rule groups, each with its ``rules`` (``health``, ``lastError``, ...)."""
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets, each with ``labels``, ``health``, ``lastError``."""
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def wait_for(
        self,
        condition: Callable[[], T | None],
        *,
        what: str,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> T:
        """Poll ``condition`` (bounded); fail with Prometheus's log tail if it never holds."""
        return poll(
            condition, timeout=timeout, interval=interval, what=what, describe=self.log_tail
        )

    def wait_for_query(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        *,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll an instant query until ``predicate(result)`` holds (default: not empty)."""

        def attempt() -> list[dict[str, Any]] | None:
            result = self.query(expr)
            return result if predicate(result) else None

        return self.wait_for(attempt, what=f"query {expr!r}", timeout=timeout)


def write_config(
    directory: Path,
    scrape_configs: Sequence[Mapping[str, Any]],
    rule_files: Sequence[Path],
    *,
    scrape_interval: str,
    evaluation_interval: str,
) -> Path:
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(Path(path).resolve()) for path in rule_files],
        "scrape_configs": [dict(scrape) for scrape in scrape_configs],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def start(
    config_file: Path, data_dir: Path, folder: Path, extra_args: Sequence[str] = ()
) -> PrometheusServer:
    """Start Prometheus and wait until ``/-/ready``; retry on another port if the port was taken.

    ``extra_args`` go on the command line after the harness's own flags
    (``--enable-feature=exemplar-storage`` ...).
    """
    binary = prometheus_binary()
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        argv = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
            *extra_args,
        ]
        child = Child(argv, folder, f"prometheus-{attempt}")
        server = PrometheusServer(f"http://127.0.0.1:{port}", child, config_file, data_dir)

        def ready(server: PrometheusServer = server) -> bool:
            with contextlib.suppress(requests.RequestException):
                return server.session.get(f"{server.url}/-/ready", timeout=2).status_code == 200
            return False

        try:
            child.wait_until(ready, what="prometheus /-/ready", timeout=READY_TIMEOUT)
        except WaitFailed as failure:
            exited = child.returncode is not None
            server.session.close()
            child.stop()
            if not exited:
                raise PrometheusError(str(failure)) from None
            tail = server.log_tail()
            if "address already in use" not in tail:
                raise PrometheusError(
                    f"prometheus exited with {child.returncode}\n{tail}"
                ) from None
            continue
        except BaseException:
            server.session.close()
            child.stop()
            raise
        return server
    raise PrometheusError(f"prometheus could not bind a loopback port\n{tail}")


@contextlib.contextmanager
def running_prometheus(
    scrape_configs: Sequence[Mapping[str, Any]],
    rule_files: Sequence[Path] = (),
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    extra_args: Sequence[str] = (),
) -> Iterator[PrometheusServer]:
    """A Prometheus scraping ``scrape_configs`` and evaluating ``rule_files`` until the block ends.

    ``scrape_configs`` are Prometheus ``scrape_configs`` entries (``job_name``, ``static_configs``
    ...); the scrape timeout defaults to the scrape interval. ``extra_args`` are more command-line
    flags (see :func:`start`).
    """
    with tempfile.TemporaryDirectory(prefix="ams-prometheus-") as tmp:
        directory = Path(tmp)
        config_file = write_config(
            directory,
            scrape_configs,
            rule_files,
            scrape_interval=scrape_interval,
            evaluation_interval=evaluation_interval,
        )
        data_dir = directory / "data"
        data_dir.mkdir()
        server = start(config_file, data_dir, directory, extra_args)
        try:
            yield server
        finally:
            server.session.close()
            server.child.stop()
