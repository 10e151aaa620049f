"""The generated Grafana dashboard and its queries, for the tests that check them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


DASHBOARD = ROOT / "grafana" / "dashboards" / "ams-jobs.json"


def load(name: str) -> ModuleType:
    """A module of grafana/ (a folder of scripts, not an installed package)."""
    module_name = f"grafana_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "grafana" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


queries = load("queries")
