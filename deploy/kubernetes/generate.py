#!/usr/bin/env python3
"""Generate deploy/kubernetes/prometheusrule.yaml from prometheus/rules.yml and prometheus/alerts.yml.

The Prometheus Operator's PrometheusRule carries the same rule groups as the plain Prometheus rule
files, so the groups are copied, never edited by hand:

    python deploy/kubernetes/generate.py           # rewrite prometheusrule.yaml
    python deploy/kubernetes/generate.py --check   # exit 1 if prometheusrule.yaml is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT / "prometheus" / "rules.yml", ROOT / "prometheus" / "alerts.yml")
TARGET = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
COMMAND = "python deploy/kubernetes/generate.py"

HEADER = f"""\
# Generated from prometheus/rules.yml and prometheus/alerts.yml by
# `{COMMAND}`.
# Do not edit: change those files and run the command again.
# To add the label your Prometheus selects rules by (kube-prometheus-stack: `release`), use
# `labels` in kustomization.yaml rather than editing this file.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, as in the source files."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def rule_groups(sources: tuple[Path, ...] = SOURCES) -> list[dict[str, Any]]:
    """Every group of the source files, in file order."""
    groups: list[dict[str, Any]] = []
    for source in sources:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        groups.extend(document["groups"])
    names = [group["name"] for group in groups]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SystemExit(f"generate.py: rule group names must be unique: {duplicates}")
    return groups


def render(sources: tuple[Path, ...] = SOURCES) -> str:
    """The PrometheusRule manifest for ``sources``."""
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ams-exporter",
            "labels": {
                "app.kubernetes.io/name": "ams-exporter",
                "app.kubernetes.io/component": "exporter",
            },
        },
        "spec": {"groups": rule_groups(sources)},
    }
    body = yaml.dump(
        manifest, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed manifest is stale"
    )
    args = parser.parse_args(argv)
    expected = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != expected:
            sys.stderr.write(f"{TARGET.relative_to(ROOT)} is stale; run: {COMMAND}\n")
            return 1
        return 0
    TARGET.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
