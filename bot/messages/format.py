"""Platform-neutral formatting shared by every renderer (Slack Block Kit, Teams cards, the demo's terminal).

Numbers, times, confidence and "how far did it move" are shown the same way everywhere; only markup,
icons and colours (which are each platform's own) stay in the renderers.
"""

from __future__ import annotations

import datetime as dt

from bot.messages.model import PHASE_LABELS

__all__ = ["PHASE_LABELS", "change_ratio", "clip", "confidence_bar", "fmt_num", "phase_label", "utc_clock", "utc_time"]


def fmt_num(v: float | None, missing: str = "–") -> str:
    """A measured value for people: 4 significant digits, scientific only when very large or very small."""
    if v is None:
        return missing
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.3g}"
    return f"{v:.4g}"


def clip(text: str, limit: int, note: str = "…") -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``note`` when it was cut (every platform has limits)."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(note))] + note


def utc_time(ts: float | None) -> str:
    """``2024-05-01 12:03 UTC``: with the date, so old threads stay clear."""
    if ts is None:
        return "?"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def utc_clock(ts: float) -> str:
    """``12:03:07 UTC``: a time of day, for a live view where the date is obvious."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%H:%M:%S UTC")


def confidence_bar(confidence: float, width: int = 10, full: str = "█", empty: str = "░") -> str:
    """A bar of ``width`` cells, ``confidence`` (0..1, clamped) of them full."""
    c = min(1.0, max(0.0, confidence))
    n = int(round(c * width))
    return full * n + empty * (width - n)


def change_ratio(before: float | None, after: float | None) -> str:
    """``×35`` or ``+12.3`` — how far a number moved, as a person reads it."""
    if before is None or after is None:
        return ""
    if before > 0 and after > 0:
        r = after / before
        if r >= 1.5:
            return f"×{r:.3g}"
        if r <= 1 / 1.5:
            return f"÷{1 / r:.3g}"
    d = after - before
    return f"{'+' if d >= 0 else '−'}{fmt_num(abs(d))}"


def phase_label(phase: str) -> str:
    return PHASE_LABELS.get(phase, phase)


def terminal_line(text: str) -> str:
    """Outside text as one line safe to print on a terminal: newlines flattened, control characters (escape
    sequences among them) shown escaped rather than run."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.replace("\n", " "))
