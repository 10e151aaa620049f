"""Bad configuration and bad flags: clear errors, exit codes, no tracebacks (scenarios 13, 14)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.azure import (
    SECRET_VARIABLE,
    Account,
    HostileAzure,
    Verbatim,
    config_text,
)
from tests.hostile.lab import Lab
from tests.hostile.leaks import Witness
from tests.hostile.process import free_port

SIZE_CAP_RE = re.compile(r"\d+(\.\d+)?\s*(MiB|MB|KiB|kB|KB|bytes)\b")
FLAG_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def upstream(module_lab: Lab) -> Iterator[tuple[HostileAzure, Account]]:
    azure = module_lab.azure()
    yield azure, module_lab.account(azure, "config")


def _write(lab: Lab, text: str) -> Path:
    folder = lab.folder / f"raw-{len(list(lab.folder.glob('raw-*')))}"
    folder.mkdir(parents=True)
    path = folder / "config.yml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# 13. A huge configuration file


def test_a_50_mib_config_file_is_refused_quickly_naming_the_size_cap(
    lab: Lab, witness: Witness, upstream: tuple[HostileAzure, Account]
) -> None:
    azure, account = upstream
    text = config_text([lab.entry(azure, account)])
    path = _write(lab, text)
    with path.open("a", encoding="utf-8") as file:
        file.write("# " + "x" * (50 * 2**20) + "\n")

    result = lab.config_check(path, timeout=15)

    assert not result.timed_out and result.elapsed < 5.0, f"took {result.elapsed:.1f} s"
    assert result.returncode != 0
    assert SIZE_CAP_RE.search(result.output), f"no size cap in: {result.output[:500]}"
    assert "Traceback" not in result.output
    witness.assert_clean()


# ---------------------------------------------------------------------------------------------
# 14. Mistakes in the file and on the command line


def test_a_tab_in_the_indentation_is_named(
    lab: Lab, witness: Witness, upstream: tuple[HostileAzure, Account]
) -> None:
    azure, account = upstream
    lines = config_text([lab.entry(azure, account)]).splitlines()
    lines[2] = "\t" + lines[2].lstrip()
    result = lab.config_check(_write(lab, "\n".join(lines) + "\n"))

    assert result.returncode != 0
    assert "tab" in result.output.lower(), result.output
    assert "Traceback" not in result.output
    witness.assert_clean()


def test_a_legacy_endpoint_is_accepted_with_a_warning(
    lab: Lab, witness: Witness, upstream: tuple[HostileAzure, Account]
) -> None:
    azure, account = upstream
    result = lab.config_check(lab.config([lab.entry(azure, account, endpoint=azure.base() + "/")]))

    assert result.returncode == 0, result.output
    assert "legacy" in result.output.lower(), result.output
    witness.assert_clean()


def test_a_variable_without_braces_gets_a_suggestion(
    lab: Lab, witness: Witness, upstream: tuple[HostileAzure, Account]
) -> None:
    azure, account = upstream
    entry = lab.entry(azure, account, client_secret=Verbatim(f"${SECRET_VARIABLE}"))
    result = lab.config_check(lab.config([entry]))

    assert result.returncode != 0, result.output
    assert "${" + SECRET_VARIABLE + "}" in result.output, result.output
    witness.assert_clean()


@pytest.mark.parametrize("client_id", ["not-a-guid", "0000-0000", "{00000000-0000-0000-0000}"])
def test_a_client_id_that_is_not_a_guid_is_refused(
    lab: Lab, witness: Witness, upstream: tuple[HostileAzure, Account], client_id: str
) -> None:
    azure, account = upstream
    result = lab.config_check(lab.config([lab.entry(azure, account, client_id=client_id)]))

    assert result.returncode != 0, result.output
    assert "client_id" in result.output
    witness.assert_clean()


@pytest.mark.parametrize(
    "flags",
    [
        ["--web.telemetry-path", "metrics"],
        ["--web.telemetry-path", "/healthz"],
        ["--web.telemetry-path", "/readyz"],
    ],
    ids=" ".join,
)
def test_a_telemetry_path_that_cannot_work_is_a_usage_error(
    lab: Lab, witness: Witness, upstream: tuple[HostileAzure, Account], flags: list[str]
) -> None:
    azure, account = upstream
    config = lab.config([lab.entry(azure, account)])
    listen = f"127.0.0.1:{free_port()}"
    args = ["--config.file", str(config), "--web.listen-address", listen, *flags]
    result = lab.cli(args, timeout=FLAG_TIMEOUT)

    assert not result.timed_out, "the exporter started serving"
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    witness.assert_clean()


@pytest.mark.parametrize("jobs", ["-5", "abc", "99999999999999999999"])
def test_a_demo_job_count_that_cannot_work_is_a_usage_error(
    lab: Lab, witness: Witness, jobs: str
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    result = lab.cli(
        ["--demo", "--demo.jobs", jobs, "--web.listen-address", listen], timeout=FLAG_TIMEOUT
    )

    assert not result.timed_out, "the exporter started serving"
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    witness.assert_clean()
