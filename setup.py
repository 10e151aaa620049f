"""The build hook (everything else is in pyproject.toml): every build records the git revision and
the date it was made in ``exporter/_build.py``, which ``ams-exporter --version`` and
``ams_exporter_build_info`` read (see ``exporter/version.py``).

The module is written into the build, never into the source tree: a wheel (and a container image)
and an sdist carry it; a wheel built from an sdist keeps the sdist's. An editable install gets
none, and asks git at run time instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from exporter.version import (  # noqa: E402  (the package being built, from its source tree)
    RECORD_MODULE,
    UNKNOWN,
    build_date,
    record,
    revision_at_build,
)

RECORD = Path("exporter", f"{RECORD_MODULE}.py")


def write_record(tree: Path) -> None:
    """Write the build's record into ``tree`` (a build directory or an sdist's tree)."""
    revision = revision_at_build(ROOT, os.environ)
    if revision is None and (ROOT / RECORD).exists():
        return  # built from an sdist, which has no .git: the record it carries stands
    (tree / RECORD).write_text(record(revision or UNKNOWN, build_date(os.environ)))


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            write_record(Path(self.build_lib))


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        write_record(Path(base_dir))


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
