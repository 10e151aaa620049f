"""What the container image will do, without a Docker engine.

The wheel is built from exactly the files the Dockerfile's build stage copies (as ``.dockerignore``
lets them through), with the same ``pip wheel`` command and the revision the image build is told
(the context has no .git), and installed into a fresh virtual environment in a temporary directory
outside the source tree. The installed ``ams-exporter --demo`` then runs as the image runs it: as
uid 10267 when the tests run as root (so that nothing but its temp dir is writable, like a
read-only root filesystem), from an empty working directory, with the image's environment. This
catches package data that the wheel leaves out (the emulator, the status page templates) and writes
outside the declared temp dir.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter import __version__
from exporter.version import REVISION_VARIABLE
from tests.support.git import head
from tests.support.image import IMAGE_UID, Dockerfile, build_context
from tests.support.process import Child, WaitFailed, free_port

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60.0
POLL_INTERVAL = 0.25

# The distribution's two top-level packages, as paths in the wheel and the build context.
PACKAGES = ("exporter/", "ams_emulator/")
# What `docker build --build-arg REVISION=$(git rev-parse HEAD)` passes: this checkout's commit.
REVISION = head(ROOT)


@dataclass
class Installed:
    root: Path
    wheel: Path
    venv: Path
    context: set[str]


@dataclass
class DemoRun:
    """Everything observed while the installed exporter ran, for the tests below to judge."""

    metrics: list[Sample] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    landing_page: str = ""
    temp_dir_while_running: list[str] = field(default_factory=list)
    healthcheck_rc: int | None = None
    healthcheck_rc_without_server: int | None = None
    exit_code: int | None = None
    stderr: str = ""
    writable_leftovers: dict[str, list[str]] = field(default_factory=dict)


def _run(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    # Traversable by the unprivileged user the exporter runs as; removed at the end.
    root = Path(tempfile.mkdtemp(prefix="ams-exporter-image-"))
    root.chmod(0o755)
    try:
        sources = Dockerfile().copy_sources(0)
        context_files = {
            p
            for p in build_context()
            if any(p == source or p.startswith(source + "/") for source in sources)
        }
        context = root / "src"
        for relative in context_files:
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / relative, context / relative)
        pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        build_env = {**pip_env, REVISION_VARIABLE: REVISION}
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--wheel-dir",
                str(root / "wheels"),
                ".",
            ],
            cwd=context,
            env=build_env,
        )
        (wheel,) = (root / "wheels").glob("ams_exporter-*.whl")
        venv = root / "opt" / "ams-exporter"
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", str(wheel)], env=pip_env)
        yield Installed(root, wheel, venv, context_files)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as_image_user() -> list[str]:
    """Drop to the image's uid when running as root; otherwise already unprivileged."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the exporter as the image's user"
    return [setpriv, f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups", "--"]


def _image_env(installed: Installed, tmpdir: Path, home: Path) -> dict[str, str]:
    """The final stage's ENV, with the temp dir and home of this run."""
    env = Dockerfile().env(Dockerfile().last_stage)
    env["PATH"] = (
        env["PATH"]
        .replace("/opt/ams-exporter", str(installed.venv))
        .replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    )
    env["TMPDIR"] = str(tmpdir)
    env["HOME"] = str(home)
    env["LANG"] = "C.UTF-8"
    return env


def _healthcheck(env: dict[str, str], url: str) -> int:
    """The Dockerfile's HEALTHCHECK command, run with the image's environment."""
    argv = Dockerfile().one("HEALTHCHECK").exec_form()
    result = subprocess.run(
        [*_as_image_user(), *argv],
        env={**env, "AMS_EXPORTER_HEALTHCHECK_URL": url},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode


def _demo_metrics(port: int) -> list[Sample] | None:
    """The samples of ``/metrics`` once they hold ``ams_up{account="demo"} 1``, else None."""
    try:
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    except requests.ConnectionError:
        return None
    if response.status_code != 200:
        return None
    samples = [s for f in text_string_to_metric_families(response.text) for s in f.samples]
    up = any(
        s.name == "ams_up" and s.labels == {"account": "demo"} and s.value == 1 for s in samples
    )
    return samples if up else None


@pytest.fixture(scope="module")
def demo(installed: Installed) -> Iterator[DemoRun]:
    run_root = installed.root / "run"
    workdir, home, tmpdir = run_root / "workdir", run_root / "home", run_root / "tmp"
    for directory in (workdir, home, tmpdir):
        directory.mkdir(parents=True)
        directory.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(tmpdir, IMAGE_UID, IMAGE_UID)  # the only directory the exporter may write
    env = _image_env(installed, tmpdir, home)
    venv_before = _files(installed.venv)
    port = free_port()
    observed = DemoRun()
    argv = [*_as_image_user(), str(installed.venv / "bin" / "ams-exporter"), "--demo"]
    argv += ["--web.listen-address", f"127.0.0.1:{port}"]
    with Child(argv, run_root, "exporter", env=env, cwd=workdir) as exporter:
        with contextlib.suppress(WaitFailed):  # the tests below say what was not observed
            observed.metrics = exporter.wait_until(
                lambda: _demo_metrics(port),
                what='ams_up{account="demo"} 1',
                timeout=STARTUP_SECONDS,
                interval=POLL_INTERVAL,
            )
        if observed.metrics:
            for path in ("/healthz", "/readyz", "/"):
                response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
                observed.statuses[path] = response.status_code
                if path == "/":
                    observed.landing_page = response.text
            observed.temp_dir_while_running = _files(tmpdir)
            observed.healthcheck_rc = _healthcheck(env, f"http://127.0.0.1:{port}/healthz")
        observed.exit_code = exporter.stop()
    observed.healthcheck_rc_without_server = _healthcheck(env, f"http://127.0.0.1:{port}/healthz")
    observed.stderr = exporter.output("stderr")
    observed.writable_leftovers = {
        "working directory": _files(workdir),
        "home": _files(home),
        "venv": sorted(set(_files(installed.venv)) ^ set(venv_before)),
    }
    yield observed


def test_wheel_ships_every_file_of_the_package(installed: Installed) -> None:
    """Package data included: templates, the emulator, py.typed; nothing left behind."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith(PACKAGES)}
    in_context = {p for p in installed.context if p.startswith(PACKAGES)}
    assert in_context - shipped == set()
    assert any(p.startswith("ams_emulator/") for p in shipped)
    assert "ams_emulator/py.typed" in shipped
    assert "exporter/_build.py" in shipped  # written by setup.py, not in the context


def _python_version(installed: Installed, *user: str) -> str:
    """The version of the Python the venv's ``python`` runs as ``user`` (a prefix such as
    :func:`_as_image_user`'s): not always this interpreter's, nor the same for every user."""
    code = "import platform; print(platform.python_version())"
    return _run([*user, str(installed.venv / "bin" / "python"), "-c", code]).stdout.strip()


def test_installed_console_script_reports_the_version_revision_and_build_date(
    installed: Installed, tmp_path: Path
) -> None:
    result = _run([str(installed.venv / "bin" / "ams-exporter"), "--version"], cwd=tmp_path)
    head, date, python = result.stdout.splitlines()
    assert head == f"ams-exporter, version {__version__} (revision: {REVISION})"
    assert re.fullmatch(r"  build date:       \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", date), date
    assert python == f"  python version:   {_python_version(installed)}"


def test_installed_demo_serves_live_metrics(installed: Installed, demo: DemoRun) -> None:
    assert demo.metrics, f'no ams_up{{account="demo"}} 1 within {STARTUP_SECONDS}s:\n{demo.stderr}'
    by_name: dict[str, list[Sample]] = {}
    for sample in demo.metrics:
        by_name.setdefault(sample.name, []).append(sample)
    (build_info,) = by_name["ams_exporter_build_info"]
    assert build_info.value == 1
    assert build_info.labels == {
        "version": __version__,
        "revision": REVISION,
        "pythonversion": _python_version(installed, *_as_image_user()),
    }
    states = {s.labels["state"] for s in by_name["ams_jobs"] if s.labels["account"] == "demo"}
    assert states == {
        "Queued",
        "Scheduled",
        "Processing",
        "Finished",
        "Error",
        "Canceled",
        "Canceling",
    }
    assert sum(s.value for s in by_name["ams_jobs"]) > 0
    assert any(s.labels["account"] == "demo" for s in by_name["ams_job_state"])


def test_installed_demo_answers_health_readiness_and_landing_page(demo: DemoRun) -> None:
    assert demo.statuses == {"/healthz": 200, "/readyz": 200, "/": 200}, demo.stderr
    assert __version__ in demo.landing_page


def test_dockerfile_healthcheck_passes_against_the_running_exporter(demo: DemoRun) -> None:
    assert demo.healthcheck_rc == 0


def test_dockerfile_healthcheck_fails_when_nothing_listens(demo: DemoRun) -> None:
    assert demo.healthcheck_rc_without_server not in (None, 0)


def test_installed_demo_stops_cleanly_on_sigterm(demo: DemoRun) -> None:
    assert demo.exit_code == 0, demo.stderr


def test_installed_demo_writes_nothing_outside_its_temp_dir(demo: DemoRun) -> None:
    """What a read-only root filesystem with a writable /tmp requires: the demo's emulator keeps
    its generated CA under TMPDIR, and nothing lands in the working directory, home or venv."""
    assert any(p.startswith("ams-emulator-") for p in demo.temp_dir_while_running)
    assert demo.writable_leftovers == {"working directory": [], "home": [], "venv": []}
    assert "Permission denied" not in demo.stderr and "Read-only" not in demo.stderr
