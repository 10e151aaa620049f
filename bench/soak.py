"""The long soak: ``python bench/soak.py --minutes 10``.

Runs the soak of ``tests/support/soak.py`` (a real exporter process, the living scenario, periodic
faults), which ``tests/test_soak.py`` runs briefly, for as long as asked; prints each injected
fault as it happens and then the figures as JSON: duration, scrapes, fault episodes, upstream
requests, resident memory, open file descriptors and threads after the warm-up and in the last
third. Exits 1 if anything was not as it should be.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.soak import run_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration (default 10)")
    args = parser.parse_args()
    report = run_soak(args.minutes * 60, progress=lambda line: print(line, flush=True))
    print(json.dumps(report.figures(), indent=2))
    for problem in report.problems:
        print("PROBLEM:", problem)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
