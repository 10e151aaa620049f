"""git as the tests' oracle for the revision a build records (never the exporter's own reading)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def head(checkout: Path) -> str:
    """The commit checked out in ``checkout``, as ``git rev-parse HEAD`` prints it."""
    return subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
