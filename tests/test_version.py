"""``--version``, ``ams_exporter_build_info``, and the revision and date each kind of build records.

The revision is the git commit the package was built from: ``setup.py`` writes it, with the build
date, into ``exporter/_build.py`` of every wheel and sdist; this editable checkout has no such module
and asks git at run time; a build from a tree without git says ``unknown``. git is the oracle.
"""

from __future__ import annotations

import ast
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.version import REVISION_VARIABLE, UNKNOWN, build_date
from tests.support.git import head
from tests.support.process import Child, run
from tests.support.prom import prometheus_binary

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = [sys.executable, "-m", "exporter"]
# What a build reads besides git; a build below sets them itself or not at all.
BUILD_VARIABLES = (REVISION_VARIABLE, "SOURCE_DATE_EPOCH")
# 2025-12-02T01:00:00Z, as reproducible builds pass it.
EPOCH = 1_764_637_200
# What the distribution is built from: the files of a commit that hold the project.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "exporter/", "ams_emulator/")
RECORD = "exporter/_build.py"


def test_version_prints_version_revision_build_date_and_python_version() -> None:
    result = run([*EXPORTER, "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ams-exporter, version {__version__} (revision: {head(ROOT)})",
        f"  build date:       {UNKNOWN}",  # an editable install was not built
        f"  python version:   {platform.python_version()}",
    ]


def test_version_is_laid_out_as_prometheus_lays_out_its_own() -> None:
    """The first line names program, version and revision; each further line is a field whose
    value starts in the same column as Prometheus's."""
    theirs = run([prometheus_binary(), "--version"]).stdout.splitlines()
    ours = run([*EXPORTER, "--version"]).stdout.splitlines()
    first = re.compile(r"(?P<program>[\w-]+), version \S+ \((?:[^()]*, )?revision: \S+\)")
    field = re.compile(r"  (?P<name>[a-z]+(?: [a-z]+)*):( +)\S.*")
    assert first.fullmatch(theirs[0]) and first.fullmatch(ours[0]), (theirs, ours)

    def columns(lines: list[str]) -> set[int]:
        matches = [field.fullmatch(line) for line in lines[1:]]
        assert all(matches), lines
        return {match.end(2) for match in matches if match}

    assert columns(ours) == columns(theirs)


def test_build_info_labels_the_version_revision_and_python_version(tmp_path: Path) -> None:
    argv = [*EXPORTER, "--demo", "--demo.jobs", "5", "--web.listen-address", "127.0.0.1:0"]
    with Child(argv, tmp_path, "exporter") as exporter:
        host, port = exporter.listening_address(timeout=30)
        response = requests.get(f"http://{host}:{port}/metrics", timeout=30)
        assert exporter.stop() == 0, exporter.tail()
    assert response.status_code == 200
    build_info = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "ams_exporter_build_info"
    ]
    revision = head(ROOT)
    python = platform.python_version()
    assert build_info == [
        ({"version": __version__, "revision": revision, "pythonversion": python}, 1)
    ]


def test_a_malformed_source_date_epoch_fails_the_build() -> None:
    """As reproducible-builds.org asks: a build never records a date it was not given."""
    assert build_date({"SOURCE_DATE_EPOCH": str(EPOCH)}) == "2025-12-02T01:00:00Z"
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        build_date({"SOURCE_DATE_EPOCH": "yesterday"})


# --- builds -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository whose one commit holds the project's sources as this work tree has them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    target = tmp_path_factory.mktemp("checkout") / "ams-exporter"
    for relative in listed:
        if relative.startswith(SOURCES) and (ROOT / relative).is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / relative, target / relative)
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.invalid"]
    for command in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "-m", "build"]):
        subprocess.run([*git, "-c", "commit.gpgsign=false", *command], cwd=target, check=True)
    return target


def _environment(**variables: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in BUILD_VARIABLES}
    return {**environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **variables}


def _pip_wheel(source: Path, out: Path, **variables: str) -> Path:
    result = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)],
        env=_environment(**variables),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("ams_exporter-*.whl")
    return wheel


def _record(text: str) -> dict[str, str]:
    """The names ``exporter/_build.py`` assigns, and their string values."""
    values = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign):
            (target,) = node.targets
            assert isinstance(target, ast.Name)
            values[target.id] = ast.literal_eval(node.value)
    return values


def _wheel_record(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return _record(archive.read(RECORD).decode())


def test_a_wheel_built_from_a_git_checkout_records_its_commit(
    checkout: Path, tmp_path: Path
) -> None:
    wheel = _pip_wheel(checkout, tmp_path, SOURCE_DATE_EPOCH=str(EPOCH))
    assert _wheel_record(wheel) == {"REVISION": head(checkout), "DATE": "2025-12-02T01:00:00Z"}
    assert not (checkout / RECORD).exists(), "the record goes into the build, not the sources"


def test_a_wheel_built_without_git_says_its_revision_is_unknown(
    checkout: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(checkout, tree, ignore=shutil.ignore_patterns(".git", "build"))
    wheel = _pip_wheel(tree, tmp_path / "wheels")
    record = _wheel_record(wheel)
    assert record["REVISION"] == UNKNOWN
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["DATE"]), record


def test_python_m_build_records_the_commit_in_the_sdist_and_the_wheel_made_from_it(
    checkout: Path, tmp_path: Path
) -> None:
    """``python -m build`` makes the sdist, then the wheel from the unpacked sdist, which has no
    .git: the wheel keeps the record the sdist carries."""
    tools = tmp_path / "tools"
    assert run([sys.executable, "-m", "venv", str(tools)], timeout=120).returncode == 0
    python = str(tools / "bin" / "python")
    installed = run(
        [python, "-m", "pip", "install", "--quiet", "build", "setuptools>=68", "wheel"],
        env=_environment(),
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    dist = tmp_path / "dist"
    built = run(
        [python, "-m", "build", "--no-isolation", "--outdir", str(dist), str(checkout)],
        env=_environment(SOURCE_DATE_EPOCH=str(EPOCH)),
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    expected = {"REVISION": head(checkout), "DATE": "2025-12-02T01:00:00Z"}
    (sdist,) = dist.glob("ams[-_]exporter-*.tar.gz")
    with tarfile.open(sdist) as archive:
        (member,) = [m for m in archive.getmembers() if m.name.endswith("/" + RECORD)]
        extracted = archive.extractfile(member)
        assert extracted is not None
        assert _record(extracted.read().decode()) == expected
    (wheel,) = dist.glob("ams_exporter-*.whl")
    assert _wheel_record(wheel) == expected
