"""Alert-storm ingest benchmark; same as ``onwatch bench ingest``. Usage: python bench/ingest.py [--json]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.benchmarks.ingest import main  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", action="store_true")
    p.add_argument("--alerts", type=int, default=5000)
    p.add_argument("--batch", type=int, default=100)
    sys.exit(main(p.parse_args()))
