"""The command line: flags, --config.check, configuration errors, and the --demo quick start."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ams_emulator import Emulator
from exporter.cli import build_parser
from exporter.wiring import DEMO_MAX_JOBS, start_demo
from tests.support.harness import account_yaml
from tests.support.logs import assert_promslog_entry, read_log
from tests.support.process import Child, run

EXPORTER = [sys.executable, "-m", "exporter"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([*EXPORTER, *args], env={**os.environ, **(env or {})})


def _error_line(result: subprocess.CompletedProcess[str], msg: str) -> str:
    """The ``err`` of the one log line of a run refused with ``msg`` and exit code 2."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (entry,) = read_log(result.stderr)
    assert_promslog_entry(entry)
    assert (entry["level"], entry["msg"]) == ("ERROR", msg), entry
    return str(entry["err"])


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


def test_demo_serves_live_metrics_within_seconds(tmp_path: Path):
    argv = [*EXPORTER, "--demo", "--web.listen-address", "127.0.0.1:0", "--log.format", "json"]
    with Child(argv, tmp_path, "exporter") as exporter:
        host, port = exporter.listening_address(timeout=30)
        samples = exporter.wait_until(
            lambda: _metrics(f"http://{host}:{port}/metrics"),
            what="/metrics to answer 200",
            timeout=30,
            interval=0.25,
        )
        up = [s for s in samples if s.name == "ams_up" and s.labels == {"account": "demo"}]
        assert [s.value for s in up] == [1.0]
        assert any(s.name == "ams_job_state" for s in samples)
        returncode = exporter.stop()
    stderr = exporter.output("stderr")
    assert returncode == 0, stderr
    assert "INFO" in [entry["level"] for entry in read_log(stderr)]


@pytest.mark.parametrize("log_format", [None, "json"], ids=["logfmt-by-default", "json"])
def test_every_log_line_has_the_promslog_keys(tmp_path: Path, log_format: str | None):
    argv = [*EXPORTER, "--demo", "--demo.jobs", "5", "--web.listen-address", "127.0.0.1:0"]
    argv += ["--log.format", log_format] if log_format else []
    with Child(argv, tmp_path, "exporter") as exporter:
        exporter.listening_address(timeout=30)
        assert exporter.stop() == 0, exporter.tail()
    stderr = exporter.output("stderr")
    entries = read_log(stderr)
    assert len(entries) >= 2, stderr  # listening, stopped
    assert all(line.startswith("{") == (log_format == "json") for line in stderr.splitlines())
    for entry in entries:
        assert_promslog_entry(entry)
    listening = [e for e in entries if "listening on 127.0.0.1:" in str(e["msg"])]
    assert [(e["level"], e["source"]) for e in listening] == [("INFO", listening[0]["source"])]
    assert str(listening[0]["source"]).startswith("cli.py:")


def _metrics(url: str) -> list[Sample] | None:
    """The samples of ``url``, or None while it does not answer 200."""
    with contextlib.suppress(requests.ConnectionError):
        response = requests.get(url, timeout=10)
        if response.status_code == 200:
            return [s for f in text_string_to_metric_families(response.text) for s in f.samples]
    return None


def _answers_ok(url: str) -> bool:
    with contextlib.suppress(requests.ConnectionError):
        return requests.get(url, timeout=10).status_code == 200
    return False


# ---------------------------------------------------------------------------------------------
# Hostile flags: usage errors (exit 2), never a traceback


def _usage_error(caplog: pytest.LogCaptureFixture, *argv: str) -> str:
    """The error logged for ``argv``, which must be refused with exit code 2."""
    with caplog.at_level(logging.ERROR, "exporter"), pytest.raises(SystemExit) as caught:
        build_parser().parse_args(list(argv))
    assert caught.value.code == 2
    (record,) = caplog.records
    assert record.getMessage() == "invalid command line, see --help"
    return str(vars(record)["err"])


RESERVED = "the paths /, /healthz, /readyz, /-/healthy, /-/ready, /-/reload, /probe are reserved"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--web.telemetry-path", "metrics"),
            "argument --web.telemetry-path: must start with /, got 'metrics'",
        ),
        (("--demo.jobs", "-5"), "argument --demo.jobs: must be from 1 to 1000000, got -5"),
    ],
    ids=["telemetry-path-without-a-slash", "negative-demo-jobs"],
)
@pytest.mark.parametrize("log_format", [(), ("--log.format", "json")], ids=["logfmt", "json"])
def test_a_bad_flag_stops_the_process_with_a_usage_error_logged(
    argv: tuple[str, ...], message: str, log_format: tuple[str, ...]
):
    result = _run("--demo", *log_format, *argv)
    assert _error_line(result, "invalid command line, see --help") == message
    assert result.stderr.startswith("{") == bool(log_format)


@pytest.mark.parametrize("flag", ["--config.c", "--config.chec", "--web.listen", "--demo.j"])
def test_flags_are_matched_exactly(caplog, flag: str):
    assert _usage_error(caplog, "--demo", flag) == f"unrecognized arguments: {flag}"
    result = _run("--demo", flag)
    assert _error_line(result, "invalid command line, see --help") == (
        f"unrecognized arguments: {flag}"
    )


def test_the_text_log_format_is_refused_with_what_replaced_it(caplog):
    assert _usage_error(caplog, "--log.format", "text") == (
        "argument --log.format: the text format was replaced by logfmt "
        "(time=... level=... source=... msg=...); choose logfmt or json"
    )


def test_help_is_printed_not_logged():
    result = _run("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ams-exporter ")
    assert result.stderr == ""


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "/readyz", "/-/healthy", "/-/ready", "/-/reload", "/probe"]
)
def test_telemetry_path_on_another_route_is_a_usage_error(caplog, path: str):
    assert _usage_error(caplog, "--web.telemetry-path", path) == (
        f"argument --web.telemetry-path: {path} is taken by another route; {RESERVED}"
    )


@pytest.mark.parametrize("path", ["/a b", "/metrics?x=1", "/metrics#top", "/m\tx", "/m\x00"])
def test_telemetry_path_that_no_request_can_reach_is_a_usage_error(caplog, path: str):
    assert _usage_error(caplog, "--web.telemetry-path", path) == (
        "argument --web.telemetry-path: must be a plain path, without spaces, control "
        f"characters, ? or #, got {path!r}"
    )


@pytest.mark.parametrize("path", ["/metrics", "/x/metrics", "/healthz/metrics", "/Healthz"])
def test_telemetry_path_elsewhere_is_accepted(path: str):
    assert build_parser().parse_args(["--web.telemetry-path", path]).telemetry_path == path


@pytest.mark.parametrize(
    ("jobs", "problem"),
    [
        ("0", "must be from 1 to 1000000, got 0"),
        ("1000001", "must be from 1 to 1000000, got 1000001"),
        ("ten", "expected a whole number, got 'ten'"),
        ("1.5", "expected a whole number, got '1.5'"),
    ],
)
def test_demo_jobs_out_of_range_is_a_usage_error(caplog, jobs: str, problem: str):
    assert _usage_error(caplog, "--demo.jobs", jobs) == f"argument --demo.jobs: {problem}"


@pytest.mark.parametrize("jobs", [1, DEMO_MAX_JOBS])
def test_demo_jobs_bounds_are_accepted(jobs: int):
    assert build_parser().parse_args(["--demo.jobs", str(jobs)]).demo_jobs == jobs


# ---------------------------------------------------------------------------------------------
# Hostile configuration files


MANAGED = (
    "accounts:\n  - name: prod\n"
    "    endpoint: https://prodams.restv2.westeurope.media.azure.net/api/\n"
    "    managed_identity: true\n"
)
LEGACY_WARNING = (
    "accounts[0].endpoint: has no /api/ path, so it is treated as a legacy root that must answer "
    "301 with the account's endpoint, on its own host, a host of AzureCloud (*.cloudapp.net, "
    "*.media.azure.net) or one in redirect_hosts"
)


def _refused(config: Path, *argv: str) -> str:
    """The configuration error ``--config.check`` of ``config`` (and ``argv``) logs; exit 2."""
    result = _run("--config.check", "--config.file", str(config), *argv)
    assert result.stdout == ""
    return _error_line(result, "configuration error")


def test_config_file_over_1_mib_is_refused(tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_bytes(MANAGED.encode() + b"#" * (2 * 2**20 - len(MANAGED)))
    assert _refused(config) == (
        f"{config}: the configuration file is 2 MiB (2,097,152 bytes), over the 1 MiB limit"
    )


def test_web_config_file_over_1_mib_is_refused(tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_text(MANAGED)
    web = tmp_path / "web.yml"
    with web.open("wb") as file:
        file.truncate(3 * 2**20)
    assert _refused(config, "--web.config.file", str(web)) == (
        f"{web}: the web configuration is 3 MiB (3,145,728 bytes), over the 1 MiB limit"
    )


def test_a_tab_in_the_config_is_named_as_a_tab(tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_text(MANAGED + "\ttimeout: 5s\n")
    assert _refused(config) == f"{config}:5:1: invalid YAML: tabs cannot indent YAML; use spaces"


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_a_configuration_error_is_one_log_line_in_the_format_asked(tmp_path: Path, log_format: str):
    config = tmp_path / "config.yml"
    config.write_text("accounts:\n  - name: prod\n    endpoint: http://insecure.example/api/\n")
    result = _run("--log.format", log_format, "--config.file", str(config))
    assert "accounts[0].endpoint" in _error_line(result, "configuration error")
    assert result.stderr.startswith("{") == (log_format == "json")


def test_config_errors_name_the_variable_never_its_value(tmp_path: Path):
    planted = "Cl1-planted~id/value"
    config = tmp_path / "config.yml"
    config.write_text(
        "accounts:\n  - name: prod\n"
        "    endpoint: https://prodams.restv2.westeurope.media.azure.net/api/\n"
        "    tenant: contoso.onmicrosoft.com\n    client_id: ${AMS_ID}\n"
        "    client_secret_file: secret.txt\n"
    )
    (tmp_path / "secret.txt").write_text("F1le-planted~secret/value\n")
    result = _run("--config.check", "--config.file", str(config), env={"AMS_ID": planted})
    assert _error_line(result, "configuration error") == (
        f"{config}: accounts[0].client_id: the value of ${{AMS_ID}} is not a GUID "
        "(8-4-4-4-12 hexadecimal digits, such as 11111111-2222-3333-4444-555555555555)"
    )
    for part in ("Cl1-planted", "id/value", "F1le-planted", "secret/value"):
        assert part not in result.stdout + result.stderr


def test_config_check_prints_warnings_on_stderr_and_exits_0(tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_text(
        MANAGED.replace(
            "https://prodams.restv2.westeurope.media.azure.net/api/", "https://media.windows.net/"
        )
    )
    result = _run("--config.check", "--config.file", str(config))
    assert result.returncode == 0, result.stderr
    (entry,) = read_log(result.stderr)
    assert (entry["level"], entry["msg"]) == ("WARN", f"configuration: {config}: {LEGACY_WARNING}")
    described = yaml.safe_load(result.stdout)["accounts"][0]
    assert (described["endpoint"], described["redirect_hosts"]) == (
        "https://media.windows.net/",
        [],
    )


def test_config_warnings_are_logged_at_start_up(tmp_path: Path):
    config = tmp_path / "config.yml"
    # Nothing answers on port 1: the warm-up collection fails at once, without the network.
    config.write_text(
        "accounts:\n  - name: legacy\n    endpoint: https://127.0.0.1:1/\n"
        "    authority_host: https://127.0.0.1:1\n    tenant: contoso.onmicrosoft.com\n"
        "    client_id: 11111111-2222-3333-4444-555555555555\n    client_secret: ${S}\n"
    )
    argv = [*EXPORTER, "--config.file", str(config), "--web.listen-address", "127.0.0.1:0"]
    argv += ["--log.format", "json"]
    with Child(argv, tmp_path, "exporter", env={**os.environ, "S": "start-up-secret"}) as exporter:
        host, port = exporter.listening_address(timeout=30)
        exporter.wait_until(
            lambda: _answers_ok(f"http://{host}:{port}/healthz"),
            what="/healthz to answer 200",
            timeout=30,
            interval=0.25,
        )
    stderr = exporter.output("stderr")
    entries = [json.loads(line) for line in stderr.splitlines()]
    logged = [e for e in entries if e["msg"] == f"configuration: {config}: {LEGACY_WARNING}"]
    assert [e["level"] for e in logged] == ["WARN"]


def test_demo_needs_no_redirect_hosts():
    demo = start_demo(1)
    try:
        (account,) = demo.config.accounts
        assert account.endpoint == demo.endpoint
        assert account.endpoint.endswith("/api/")
        assert (account.redirect_hosts, demo.config.warnings) == ((), ())
    finally:
        demo.stop()
