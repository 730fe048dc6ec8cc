"""The feedback message of an incident's thread: what people said about its cause and fix, and the buttons
"Confirm cause", "It was #n …" and "Fixed by …" while the incident is not closed."""

from __future__ import annotations

import time

from bot.memory.feedback import FeedbackState
from bot.messages.model import Action, FeedbackBlock, Message, feedback_key

MAX_ALTERNATIVES = 2
MAX_FIXES = 2
HINT = ("Another cause? Reply `@onwatch cause SERVICE KIND [why]`. What fixed it? `@onwatch fixed TEXT`. "
        "Only the feedback group may answer; answers can be changed until the incident is closed.")


def _when(t: float | None) -> str:
    return time.strftime("%H:%M UTC %d %b", time.gmtime(t)) if t else ""


def feedback_message(st: FeedbackState) -> Message:
    fb = st.feedback
    lines: list[str] = []
    if fb is not None and fb.cause_service:
        verb = {"confirmed": "Cause confirmed", "ranked": "Cause corrected", "free": "Cause named"}.get(
            fb.cause_choice, "Cause")
        lines.append(f"{verb} by {fb.cause_by_name or fb.cause_by} ({_when(fb.cause_at)}): "
                     f"{fb.cause_kind.replace('_', ' ')} in {fb.cause_service}" + (f" — {fb.cause_note}" if fb.cause_note else ""))
    else:
        lines.append("Cause: not confirmed yet.")
    if fb is not None and fb.fix:
        lines.append(f"Fixed by: {fb.fix} (recorded by {fb.fix_by_name or fb.fix_by}, {_when(fb.fix_at)})")
    else:
        lines.append("What fixed it: not recorded yet.")
    actions: list[Action] = []
    if not st.closed:
        inc = st.incident_id
        top = st.causes[0] if st.causes else None
        if top is not None:
            actions.append(Action("onwatch_feedback", f"Confirm cause: {top.service} {top.kind.replace('_', ' ')}"[:75],
                                  f"{inc}|confirm", "primary"))
        for c in st.causes[1:1 + MAX_ALTERNATIVES]:
            actions.append(Action("onwatch_feedback", f"Wrong cause — it was #{c.rank} {c.service}"[:75],
                                  f"{inc}|cause|{c.rank}"))
        for f in [f for f in st.fixes if f.status == "succeeded"][:MAX_FIXES]:
            actions.append(Action("onwatch_feedback", f"Fixed by: {f.title}"[:75], f"{inc}|fix|{f.proposal_id}"))
    else:
        lines.append("This incident is closed; its feedback can no longer change.")
    block = FeedbackBlock(st.incident_id, tuple(lines), tuple(actions), "" if st.closed else HINT)
    return Message(blocks=(block,), fallback=f"{st.incident_id}: " + " ".join(lines), key=feedback_key(st.incident_id))
