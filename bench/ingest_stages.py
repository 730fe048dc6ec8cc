"""Per-alert cost of each intake step and the ratio ceilings they allow; same as ``onwatch bench ingest-stages``.

Usage: python bench/ingest_stages.py [--json] [--alerts N] [--batch N] [--concurrency N] [--repeats N]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.benchmarks.stages import REPEATS, main  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", action="store_true")
    p.add_argument("--alerts", type=int, default=5000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--repeats", type=int, default=REPEATS)
    sys.exit(main(p.parse_args()))
