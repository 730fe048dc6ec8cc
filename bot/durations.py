"""Durations as people write them in settings, chat and on the command line: one integer and one unit (``30m``).

One parser for every caller; each says which units it takes (a silence is minutes to days, an SLO period may
be weeks). Anything else is a ``ValueError`` naming the units, so a typo is refused rather than guessed at.
"""

from __future__ import annotations

import re

UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_FORM = re.compile(r"^(\d{1,9})([a-z])$")


def parse_duration(text: str, units: str = "smhdw") -> int:
    """Seconds in ``text`` (as ``30d``: digits then one of ``units``); ``ValueError`` otherwise."""
    match = _FORM.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or match.group(2) not in units:
        example = "30d" if "d" in units else f"30{units[0]}"
        raise ValueError(f"{text!r} is not a duration: write one integer and a unit of "
                         f"{', '.join(units[:-1])} or {units[-1]}, as {example}")
    return int(match.group(1)) * UNIT_S[match.group(2)]
