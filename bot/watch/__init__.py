"""Watch items: early warnings about one service from the proactive checks (degradation, SLO slow burn).

``WatchFinding`` in, ``WatchService`` keeps one item per key (docs/proactive.md, "Watch items").
"""

from bot.watch.model import PostRef, WatchFinding, WatchFindingError, WatchKind, WatchOutcome, WatchStatus

__all__ = ["PostRef", "WatchFinding", "WatchFindingError", "WatchKind", "WatchOutcome", "WatchStatus"]
