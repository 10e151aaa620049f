"""docs/architecture.md names every module and every import contract the code has."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _prose(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("*", ""))


def test_every_import_contract_is_described() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    assert len(contracts) >= 6
    missing = [c["name"] for c in contracts if _prose(c["name"]) not in _prose(ARCHITECTURE)]
    assert not missing, f"docs/architecture.md does not describe the contracts {missing}"


def test_every_exporter_module_has_a_row() -> None:
    modules = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "exporter").rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "exporter"
    )
    missing = [module for module in modules if f"| `{module}` |" not in ARCHITECTURE]
    assert not missing, f"docs/architecture.md has no row for {missing}"


def test_every_emulator_module_is_named() -> None:
    section = ARCHITECTURE.split("## The emulator", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+\.py)`", section))
    modules = {path.name for path in (ROOT / "ams_emulator").glob("*.py")} - {"__init__.py"}
    assert modules - named == set(), f"the emulator section does not name {modules - named}"
