"""Per-alert cost of each intake step and the ratio ceilings they allow: ``onwatch bench ingest-stages``.

Usage: python bench/ingest_stages.py [--json] [--alerts N] [--batch N] [--concurrency N] [--repeats N]."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "ingest-stages", *sys.argv[1:]]))
