"""``python -m ams_emulator`` as a user runs it: help, a working endpoint, clean shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ams_emulator.__main__ import build_parser
from tests.support.process import Child, run

EMULATOR = [sys.executable, "-m", "ams_emulator"]
READY = r"^Press Ctrl-C to stop\."


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run([*EMULATOR, *args])


def _field(text: str, name: str) -> str:
    match = re.search(rf"^\s*{re.escape(name)}:\s+(\S+)", text, re.MULTILINE)
    assert match is not None, f"{name!r} missing from:\n{text}"
    return match.group(1)


def test_help_documents_every_flag() -> None:
    result = _run("--help")
    assert result.returncode == 0
    flags = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    ]
    assert len(flags) >= 18
    for flag in flags:
        assert flag in result.stdout, f"{flag} is not in --help"


def test_started_cli_prints_a_working_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    argv = [*EMULATOR, "--jobs", "7", "--speed", "0", "--seed", "3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with Child(argv, tmp_path, "emulator", env=env) as emulator:
        emulator.wait_for(READY)
        text = emulator.output()
        endpoint = _field(text, "account endpoint")
        ca_file = _field(text, "CA file")
        token = requests.post(
            f"{_field(text, 'authority host')}/{_field(text, 'tenant')}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": _field(text, "client id"),
                "client_secret": _field(text, "client secret"),
                "scope": "https://rest.media.azure.net/.default",
            },
            verify=ca_file,
            timeout=30,
        ).json()["access_token"]
        jobs = requests.get(
            endpoint + "Jobs",
            headers={"Authorization": f"Bearer {token}", "x-ms-version": "2.19"},
            verify=ca_file,
            timeout=30,
        )
        assert jobs.status_code == 200
        assert len(jobs.json()["value"]) == 7
        assert f"endpoint: {endpoint}" in text  # the exporter configuration snippet
        emulator.signal(signal.SIGTERM)
        assert emulator.wait(timeout=30) == 0
        assert "stopped" in emulator.output()  # all of it: the emulator has exited
        assert not Path(ca_file).exists()


def test_faults_from_flags_reach_the_server(tmp_path: Path) -> None:
    with Child([*EMULATOR, "--jobs", "1", "--aad-down"], tmp_path, "emulator") as emulator:
        try:
            emulator.wait_for(READY)
            text = emulator.output()
            url = f"{_field(text, 'authority host')}/{_field(text, 'tenant')}/oauth2/v2.0/token"
            try:
                requests.post(url, data={}, verify=_field(text, "CA file"), timeout=30)
                reached = True
            except requests.exceptions.ConnectionError:
                reached = False
            assert not reached, "Azure AD answered although --aad-down was given"
        finally:
            emulator.signal(signal.SIGINT)
            assert emulator.wait(timeout=30) == 0


def test_any_fault_of_the_python_api_can_be_given_on_the_command_line(tmp_path: Path) -> None:
    argv = [
        *EMULATOR,
        "--jobs",
        "1",
        "--fault",
        "status,status=429,retry_after=2,count=1,path=Jobs",
    ]
    with Child(argv, tmp_path, "emulator") as emulator:
        try:
            emulator.wait_for(READY)
            text = emulator.output()
            url = _field(text, "account endpoint") + "Jobs"
            first = requests.get(url, verify=_field(text, "CA file"), timeout=30)
            second = requests.get(url, verify=_field(text, "CA file"), timeout=30)
            assert (first.status_code, first.headers.get("Retry-After")) == (429, "2")
            assert second.status_code == 401, "count=1: the next request reaches the normal checks"
        finally:
            emulator.signal(signal.SIGINT)
            assert emulator.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown fault kind 'bogus'"),
        ("status,status=abc", "status='abc': expected int"),
        ("status,colour=red", "'colour=red': expected KEY=VALUE"),
    ],
)
def test_bad_fault_specs_are_refused_clearly(spec: str, message: str) -> None:
    result = _run("--fault", spec)
    assert result.returncode == 2
    assert message in result.stderr


def test_non_loopback_host_is_refused_without_the_opt_in() -> None:
    result = _run("--host", "192.0.2.10")
    assert result.returncode == 2
    assert "--allow-non-loopback" in result.stderr


def test_bad_flag_values_get_a_clear_error() -> None:
    ratio = _run("--fail-ratio", "2")
    assert ratio.returncode == 2
    assert "within 0..1" in ratio.stderr
    status = _run("--fail-ratio", "0.5", "--fail-status", "999")
    assert status.returncode == 2
    assert "HTTP status" in status.stderr
    start = _run("--start", "2024-01-01T00:00:00")
    assert start.returncode == 2
    assert "time zone" in start.stderr
