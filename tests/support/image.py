"""The Dockerfile and its build context as data: what the image, compose and Kubernetes tests read."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


DOCKERFILE = ROOT / "Dockerfile"


DOCKERIGNORE = ROOT / ".dockerignore"


IMAGE_UID = 10267


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

    def run_flags(self) -> list[str]:
        """The ``--flag=value`` words before a RUN's command (``--mount=...``, ``--network=...``)."""
        assert self.keyword == "RUN", self.keyword
        flags = []
        for word in self.args.split(" "):
            if not word.startswith("--"):
                break
            flags.append(word)
        return flags

    def mounts(self) -> list[dict[str, str]]:
        """The options of each ``--mount`` of a RUN, e.g. ``{"type": "secret", "id": "pip_ca"}``."""
        return [
            dict(option.partition("=")[::2] for option in flag.removeprefix("--mount=").split(","))
            for flag in self.run_flags()
            if flag.startswith("--mount=")
        ]

    def secrets(self) -> dict[str, str]:
        """Secret id -> the path a RUN mounts it at (BuildKit's and buildah's default:
        /run/secrets/ID)."""
        return {
            mount["id"]: mount.get("target", f"/run/secrets/{mount['id']}")
            for mount in self.mounts()
            if mount.get("type") == "secret"
        }

    def shell_command(self) -> str:
        """A shell-form RUN's command, its flags left out (continuation lines are joined)."""
        flags = self.run_flags()
        return self.args.split(" ", len(flags))[-1] if flags else self.args


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


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
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
    patterns = ignore_patterns()

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


DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


README = ROOT / "README.md"


def documented_commands(section: str, document: Path = DEPLOYMENT_DOC) -> list[list[str]]:
    """The shell commands of the ```sh blocks under the ``## section`` heading of
    docs/deployment.md (or of the README, which has sections of the same names), continuation
    lines joined."""
    text = document.read_text(encoding="utf-8")
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
