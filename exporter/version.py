"""What is running: the version, the git revision and date of its build, and the Python running it.

A build (``pip wheel``, ``pip install``, ``python -m build``, the container image) records the
revision and the date in the module ``exporter/_build.py``, which ``setup.py`` writes into the build,
never into the source tree. An editable install (``pip install -e .``) has no such module: its
revision is the checkout's current commit, asked of git, because that moves with every commit.
What cannot be known is ``unknown``.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter import __version__

UNKNOWN = "unknown"
# The module a build writes, inside the ``exporter`` package.
RECORD_MODULE = "_build"
# A build whose source has no .git (the container image's build context) is told its revision.
REVISION_VARIABLE = "AMS_EXPORTER_REVISION"
# The directory that holds the ``exporter`` package: a git checkout in an editable install.
CHECKOUT = Path(__file__).resolve().parent.parent

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Build:
    """The exporter's version, the commit and date it was built from, and the Python version."""

    version: str
    revision: str
    date: str  # RFC 3339, UTC
    python_version: str

    def describe(self, program: str = "ams-exporter") -> str:
        """``--version``'s text, laid out as ``prometheus --version`` prints its own."""
        return (
            f"{program}, version {self.version} (revision: {self.revision})\n"
            f"  build date:       {self.date}\n"
            f"  python version:   {self.python_version}\n"
        )


@functools.cache
def running() -> Build:
    """The build of this process: the recorded revision and date, else the checkout's commit."""
    try:
        record = importlib.import_module(f"exporter.{RECORD_MODULE}")
    except ModuleNotFoundError:
        revision, date = git_revision(CHECKOUT) or UNKNOWN, UNKNOWN
    else:
        revision, date = str(record.REVISION), str(record.DATE)
    return Build(__version__, revision, date, platform.python_version())


def git_revision(checkout: Path) -> str | None:
    """The commit checked out in ``checkout`` if it is a git checkout and git can tell."""
    if not (checkout / ".git").exists():
        return None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=checkout,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and _COMMIT.fullmatch(revision) else None


def revision_at_build(checkout: Path, environ: Mapping[str, str]) -> str | None:
    """The revision a build of ``checkout`` records: :data:`REVISION_VARIABLE` when set, else the
    checkout's commit; ``None`` when neither is known."""
    return environ.get(REVISION_VARIABLE, "").strip() or git_revision(checkout)


def record(revision: str, date: str) -> str:
    """The text of ``exporter/_build.py``, which :func:`running` reads."""
    return (
        '"""Written by setup.py at build time: the revision and date of this build."""\n\n'
        f"REVISION = {revision!r}\n"
        f"DATE = {date!r}\n"
    )


def build_date(environ: Mapping[str, str]) -> str:
    """``SOURCE_DATE_EPOCH`` (Unix seconds), else the current time, as RFC 3339 in UTC."""
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        moment = datetime.datetime.now(datetime.timezone.utc)
    elif epoch.isdigit():
        moment = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
    else:
        raise ValueError(f"SOURCE_DATE_EPOCH must be Unix seconds, got {epoch!r}")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
