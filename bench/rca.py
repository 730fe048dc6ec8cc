"""Run the RCA benchmark on every case-bundle dataset in ../shared/datasets and print the figures.

    .venv/bin/python bench/rca.py [--no-baro] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.benchmarks.rca import format_table, run_dataset  # noqa: E402

DATASETS = ROOT / ".." / "shared" / "datasets"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--no-baro", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--datasets", default=str(DATASETS))
    a = p.parse_args()
    root = Path(a.datasets)
    found = sorted(d for d in root.iterdir() if (d / "cases").is_dir() and (d / "labels.json").is_file())
    if not found:
        print(f"no case-bundle datasets under {root}", file=sys.stderr)
        return 2
    out = {}
    for d in found:
        s = run_dataset(d, with_baro=not a.no_baro)
        out[d.name] = {k: v for k, v in s.items() if k != "per_case"}
        if not a.json:
            print(format_table(d.name, s), flush=True)
    if a.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
