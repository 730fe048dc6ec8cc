"""Outside text in a watch item (service, signal, title, summary, a change's description) can neither mention,
link nor format: through the real Slack adapter to the fake Slack API, and in the Teams rendering."""

from __future__ import annotations

import re

from sqlmodel import select

from bot.chat.slack import render as slack_render
from bot.chat.teams.adapter import message_activity
from bot.messages.model import Message, Text
from bot.store.db import Database
from bot.store.models import ChangeRecord, WatchItem
from bot.watch import compose
from bot.watch.context import WatchContext
from bot.watch.model import WatchOutcome
from integrations.base import ChangeEvent
from tests.fakes.slack_api import FakeSlack
from tests.test_chat_escaping import assert_slack_inert, assert_teams_inert, teams_parsed
from tests.watch_fixtures import T0, finding, rig

SERVICE = "*bold* <!channel>"
SIGNAL = "_it_ ~s~"
TITLE = "<!here> *urgent* ``` <@U024BE7LH>"
SUMMARY = "<http://evil.example|click here> *bold* ```\n<!channel>``` `x`"
FORMATTING = ("*bold*", "*urgent*", "_it_", "~s~")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def unformatted(text: str) -> str:
    """What Slack would format: the mrkdwn text outside code blocks and inline code spans."""
    return CODE.sub("", text)


def assert_no_formatting(rendered: slack_render.Rendered) -> None:
    assert_slack_inert(rendered)
    for text in [rendered.text, *_mrkdwn(rendered.blocks)]:
        outside = unformatted(text)
        assert not [f for f in FORMATTING if f in outside], text
        assert "`" not in CODE.sub("", text.replace("```", "\0")).replace("\0", ""), text  # code spans all closed


def _mrkdwn(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [str(node["text"])] if node.get("type") == "mrkdwn" else []
        return own + [t for v in node.values() for t in _mrkdwn(v)]
    if isinstance(node, list):
        return [t for v in node for t in _mrkdwn(v)]
    return []


async def test_a_hostile_watch_item_is_inert_in_slack(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    r = rig(db, slack, sqlite_url)
    async with db.begin() as s:
        s.add(ChangeRecord(service=SERVICE, version="v1 <!everyone>", kind="deploy", time=T0 - 60,
                           description="*rolled* <http://evil.example|out>"))
    watch = r.service()
    f = finding(SERVICE, SIGNAL, title=TITLE, summary=SUMMARY)
    assert await watch.observe(f) == WatchOutcome.OPENED
    (post,) = r.posts()
    rendered = slack_render.Rendered(blocks=post["blocks"], text=post["text"])
    assert_no_formatting(rendered)
    sent = " ".join(_mrkdwn(post["blocks"]))
    assert "*bold* &lt;!channel&gt;" in sent and "*rolled* &lt;http://evil.example|out&gt;" in sent  # shown, inert
    header = next(b for b in post["blocks"] if b["type"] == "header")
    assert header["text"]["type"] == "plain_text" and "<!here> *urgent*" in header["text"]["text"]
    # the replies under it, and the line the incident's thread gets on escalation
    async with db.session() as s:
        item = (await s.exec(select(WatchItem))).one()
    r.clock.now += 300
    assert await watch.close(f.key, reason="*closed* by <!channel>")
    (reply,) = r.replies(post["ts"])
    assert_no_formatting(slack_render.Rendered(blocks=reply["blocks"], text=reply["text"]))
    item.escalated_at, item.incident_id = r.clock.now, "INC-1A2B3C"
    for msg in (Message(blocks=(Text(compose.early_warning_line(item)),), fallback=compose.early_warning_line(item)),
                compose.escalated_message(item)):
        assert_no_formatting(slack_render.render_message(msg))
    assert "`*bold* <!channel>`" in compose.early_warning_line(item)


async def test_a_hostile_watch_item_is_inert_in_teams(db: Database) -> None:
    f = finding(SERVICE, SIGNAL, title=TITLE, summary=SUMMARY)
    item = WatchItem(id=7, key=f.key, kind=str(f.kind), service=SERVICE, signal=SIGNAL, title=TITLE,
                     detail={"summary": SUMMARY, "started_at": T0}, opened_at=T0 + 60, last_seen_at=T0 + 60,
                     incident_id="INC-1A2B3C", escalated_at=T0 + 120)
    ctx = WatchContext(changes=(ChangeEvent(SERVICE, T0 - 60, "deploy", "v1 <!everyone>",
                                            description="[Reset](https://evil.example) *rolled*", source="x"),),
                       missing=("github: <b>down</b> [x](y)",), change_sources=1)
    for msg in (await compose.opened_message(item, f, ctx), compose.recovered_message(item, T0 + 900, "*x*"),
                compose.escalated_message(item),
                Message(blocks=(Text(compose.early_warning_line(item)),), fallback=compose.early_warning_line(item))):
        activity = message_activity(msg)
        if activity.attachments:
            assert_teams_inert(teams_parsed(activity.attachments[0].content))
        assert_teams_inert([activity.text or "", activity.summary or ""])
