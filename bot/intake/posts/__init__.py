"""Alert posts: messages other tools post in the incident channel, turned into alerts.

Recognised (by content, not by who posted): Alertmanager's default Slack template (and the common
"*Alert:* / *Details:*" text template), Grafana's Slack contact point, Datadog monitors, PagerDuty,
Opsgenie, Sentry and AWS Chatbot (CloudWatch alarms), in their attachment and Block Kit shapes.
Anything else returns ``[]``. The parser is platform-neutral: chat listeners (Slack, Teams) build a
``ChatPost`` and hand it here. It never raises on odd input: a field of the wrong type is ignored.
"""


from __future__ import annotations

from collections.abc import Callable

from bot.intake.posts import cloudwatch, datadog, opsgenie, pagerduty, prometheus, sentry
from bot.intake.posts.common import ChatPost, Part, split_parts
from bot.triage.alert import AlertIn

__all__ = ["ChatPost", "parse_alert_post"]

MAX_POST_CHARS = 100_000

# Tried in this order; the first vendor that recognises any part of the message takes it.
_PARSERS: tuple[Callable[[Part], list[AlertIn] | None], ...] = (
    cloudwatch.parse, pagerduty.parse, opsgenie.parse, sentry.parse, datadog.parse, prometheus.parse,
)

def parse_alert_post(post: ChatPost) -> list[AlertIn]:
    """The alerts a chat message carries, or ``[]`` when it is not an alert post."""
    size = len(post.text) + sum(len(str(a)) for a in post.attachments[:50]) + sum(len(str(b)) for b in post.blocks[:100])
    if size > MAX_POST_CHARS:
        return []
    parts = split_parts(post)
    if not parts:
        return []
    for parse in _PARSERS:
        results = [parse(p) for p in parts]
        if any(r is not None for r in results):
            return [a for r in results if r for a in r]
    return []
