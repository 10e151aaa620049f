"""The command line: flags, --config.check, configuration errors, and the --demo quick start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.emulator import Emulator
from tests.harness import account_yaml

EXPORTER = [sys.executable, "-m", "exporter"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXPORTER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_version():
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ams-exporter {__version__}"


def test_help_lists_every_flag():
    result = _run("--help")
    for flag in (
        "--config.file",
        "--config.check",
        "--web.listen-address",
        "--web.telemetry-path",
        "--log.level",
        "--log.format",
        "--demo",
        "--version",
    ):
        assert flag in result.stdout


def test_config_check_prints_the_config_without_secrets(tmp_path: Path):
    with Emulator(jobs=5, seed=1, speed=0) as emulator:
        config = tmp_path / "config.yml"
        config.write_text("accounts:\n" + account_yaml("prod", emulator, secret_var="PROD_SECRET"))
        result = _run(
            "--config.check",
            "--config.file",
            str(config),
            env={"PROD_SECRET": emulator.client_secret},
        )
    assert result.returncode == 0, result.stderr
    assert "prod" in result.stdout
    assert emulator.client_secret not in result.stdout + result.stderr
    assert "<redacted>" in result.stdout


def test_config_errors_exit_2_with_the_key_path(tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_text("accounts:\n  - name: prod\n    endpoint: http://insecure.example/api/\n")
    result = _run("--config.check", "--config.file", str(config))
    assert result.returncode == 2
    assert "accounts[0].endpoint" in result.stderr
    assert result.stdout == ""


def test_missing_config_file_is_a_clear_error(tmp_path: Path):
    result = _run("--config.file", str(tmp_path / "absent.yml"))
    assert result.returncode == 2
    assert "absent.yml" in result.stderr


def test_no_config_and_no_demo_says_what_to_do():
    result = _run()
    assert result.returncode == 2
    assert "--config.file" in result.stderr and "--demo" in result.stderr


def test_unusable_listen_address_is_reported():
    result = _run("--demo", "--web.listen-address", "127.0.0.1:notaport")
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_demo_serves_live_metrics_within_seconds():
    port = _free_port()
    process = subprocess.Popen(
        [*EXPORTER, "--demo", "--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        samples = _poll_metrics(f"http://127.0.0.1:{port}/metrics", attempts=120)
        up = [s for s in samples if s.name == "ams_up" and s.labels == {"account": "demo"}]
        assert [s.value for s in up] == [1.0]
        assert any(s.name == "ams_job_state" for s in samples)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert '"level": "info"' in stderr


def _poll_metrics(url: str, attempts: int) -> list:
    last_error: Exception | None = None
    for _ in range(attempts):
        try:
            response = requests.get(url, timeout=10)
            if response.status_code == 200:
                return [s for f in text_string_to_metric_families(response.text) for s in f.samples]
        except requests.ConnectionError as error:
            last_error = error
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer: {last_error}")
