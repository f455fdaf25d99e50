"""The recovery fault matrix as a table: runs tests/integration/test_recovery_matrix.py (a real local stack;
`db recover` killed or interrupted at its journaled phases then resumed or aborted, damaged and missing
objects, the README's by-hand procedure) and prints scenario x outcome x what was named x the environment
after each.

    python bench/recovery_matrix.py            # ~5-7 minutes on a loaded 2-core machine
    python bench/recovery_matrix.py --json     # the rows as JSON
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "matrix.json"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "tests/integration/test_recovery_matrix.py"], cwd=REPO,
                              env={**os.environ, "RAGOPS_MATRIX_REPORT": str(report)})
        rows = json.loads(report.read_text()) if report.exists() else []
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        widths = [max([len(h), *(len(str(r[k])) for r in rows)]) for h, k in
                  (("scenario", "scenario"), ("outcome", "outcome"), ("named", "named"), ("after", "after"))]
        line = " | ".join(f"{{:{w}}}" for w in widths)
        print(line.format("scenario", "outcome", "named", "environment after"))
        print("-+-".join("-" * w for w in widths))
        for r in rows:
            print(line.format(r["scenario"], r["outcome"], r["named"], r["after"]))
        bad = [r for r in rows if r["after"] != "serving, 1 primary"]
        print(f"\n{len(rows)} scenarios, {len(bad)} leaving the environment down or with two primaries; pytest exit "
              f"{proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
