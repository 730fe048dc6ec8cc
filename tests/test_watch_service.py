"""Watch items: opened and posted once per key, held while seen, closed with a reply on recovery, rate-limited
per service (across restarts), silenced by an active silence only, and one item per key under concurrency on
SQLite and PostgreSQL. Posts go through the real Slack adapter to the local fake Slack API."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.audit import Actor, verify_chain
from bot.config import Settings, TriageSettings, WatchSettings
from bot.store.db import Database
from bot.store.models import AuditEvent, ChangeRecord, WatchItem
from bot.triage import silences
from bot.triage.suppress import maintenance_windows
from bot.watch.model import WatchFinding, WatchFindingError, WatchKind, WatchOutcome, WatchStatus
from bot.watch.service import WatchService
from integrations.base import Sources
from integrations.github import GitHubChanges
from integrations.http import HttpConfig, HttpSource
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixtures import INCIDENT_CHANNEL
from tests.watch_fixtures import T0, finding, rig

OPERATOR = Actor("cli", "operator")  # at the CLI: may create silences without being in a group


async def _items(db: Database) -> list[WatchItem]:
    async with db.session() as s:
        return list((await s.exec(select(WatchItem).order_by(col(WatchItem.id)))).all())


async def _actions(db: Database) -> list[str]:
    async with db.session() as s:
        return [a.action for a in (await s.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all()]


def _text(msg: dict) -> str:
    return json.dumps(msg.get("blocks") or [])


async def test_opened_once_posted_once_then_held(anydb: Database, slack: FakeSlack, sqlite_url: str) -> None:
    r = rig(anydb, slack, sqlite_url)
    async with anydb.begin() as s:  # a deploy 5 minutes before the start, and one a day earlier (out of the window)
        s.add(ChangeRecord(service="checkout", version="v2.4.0", kind="deploy", time=T0 - 300, description="new cart"))
        s.add(ChangeRecord(service="checkout", version="v2.3.9", kind="deploy", time=T0 - 86400))
        s.add(ChangeRecord(service="payments", version="v9", kind="deploy", time=T0 - 60))
    watch = r.service()
    assert await watch.observe(finding()) == WatchOutcome.OPENED
    (post,) = r.posts()
    body = _text(post)
    assert "Early warning" in body and "latency_p99" in body and "v2.4.0" in body and "5 min before the start" in body
    assert "v2.3.9" not in body and "v9" not in body  # outside the window / another service
    (chart,) = [f for f in slack.files.values() if f["name"] == "onwatch-early-warning.png"]
    assert chart["data"].startswith(b"\x89PNG") and chart["shared"]["thread_ts"] == post["ts"]
    (item,) = await _items(anydb)
    assert item.status == WatchStatus.OPEN and item.key == "degradation:checkout:latency_p99"
    assert item.posts == [{"platform": "slack", "channel": INCIDENT_CHANNEL, "thread": post["ts"]}]
    assert item.detail["started_at"] == T0 and item.detail["baseline"] == 0.2 and len(item.detail["points"]) == 40
    assert [c["version"] for c in item.detail["changes"]] == ["v2.4.0"]

    r.clock.now += 60
    again = finding(value=0.9)
    assert await watch.observe(again) == WatchOutcome.HELD
    assert await r.service().observe(again) == WatchOutcome.HELD  # another replica, too
    assert len(r.posts()) == 1 and len(slack.calls_of("chat.postMessage")) == 1
    (item,) = await _items(anydb)
    assert item.last_seen_at == r.clock.now and item.detail["last_value"] == 0.9
    assert (await _actions(anydb)).count("watch.opened") == 1
    assert (await verify_chain(anydb)).ok


async def test_only_what_the_check_looked_at_can_recover(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    """A series the scan did not read (its service stopped reporting, or left detect:) is not health: its item
    stays open until the check reads it again, or an operator closes it."""
    r = rig(db, slack, sqlite_url, min_interval_s=0)
    watch = r.service()
    await watch.observe(finding())
    await watch.observe(finding("cart", "latency_p99"))
    looked = ["degradation:cart:latency_p99"]  # checkout returned no series this tick
    assert await watch.recover([], WatchKind.DEGRADATION, judged=looked) == ["degradation:cart:latency_p99"]
    assert [i.key for i in await _items(db) if i.status == WatchStatus.OPEN] == ["degradation:checkout:latency_p99"]
    assert await watch.recover([], WatchKind.DEGRADATION, judged=["degradation:checkout:latency_p99"]) == [
        "degradation:checkout:latency_p99"]


async def test_recovery_closes_and_replies_in_the_thread(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    r = rig(db, slack, sqlite_url, min_interval_s=0)
    watch = r.service()
    await watch.observe(finding())
    await watch.observe(finding("checkout", "error_rate"))
    slo = finding("checkout", "availability", key="slo:checkout-availability", kind=WatchKind.SLO_BURN)
    await watch.observe(slo)
    posts = r.posts()
    assert len(posts) == 3
    # the degradation check still sees error_rate only: latency_p99 recovered; the SLO item is another kind
    r.clock.now += 1500
    assert await watch.recover(["degradation:checkout:error_rate"], WatchKind.DEGRADATION) == [
        "degradation:checkout:latency_p99"]
    (reply,) = r.replies(posts[0]["ts"])
    assert "Recovered at 16:35 UTC: it lasted 35 min from its start at 16:00 UTC" in _text(reply)
    assert r.replies(posts[1]["ts"]) == [] and r.replies(posts[2]["ts"]) == []
    assert await r.service().recover(["degradation:checkout:error_rate"], "degradation") == []  # once only
    assert len(r.replies(posts[0]["ts"])) == 1
    assert await watch.close("slo:checkout-availability") is True
    assert await watch.close("slo:checkout-availability") is False
    assert len(r.replies(posts[2]["ts"])) == 1
    items = {i.key: i for i in await _items(db)}
    assert items["degradation:checkout:latency_p99"].status == WatchStatus.CLOSED
    assert items["degradation:checkout:latency_p99"].closed_at == r.clock.now
    assert items["degradation:checkout:error_rate"].status == WatchStatus.OPEN
    assert (await _actions(db)).count("watch.closed") == 2
    # the same condition coming back later is a new item with its own post
    assert await watch.observe(finding()) == WatchOutcome.OPENED
    assert len(r.posts()) == 4 and len(await _items(db)) == 4


async def test_rate_limit_per_service_holds_across_a_restart(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    r = rig(db, slack, sqlite_url, min_interval_s=3600, service_intervals={"search": 60})
    watch = r.service()
    assert await watch.observe(finding("checkout", "latency_p99")) == WatchOutcome.OPENED
    assert await watch.observe(finding("checkout", "error_rate")) == WatchOutcome.RATE_LIMITED
    assert await watch.observe(finding("payments", "error_rate")) == WatchOutcome.OPENED  # per service
    r.clock.now += 1800
    restarted = r.service()  # a new process on the same database
    assert await restarted.observe(finding("checkout", "error_rate")) == WatchOutcome.RATE_LIMITED
    assert await restarted.observe(finding("checkout", "latency_p99")) == WatchOutcome.HELD  # its own key is held
    r.clock.now += 1801
    assert await restarted.observe(finding("checkout", "error_rate")) == WatchOutcome.OPENED
    # a service with its own interval
    assert await restarted.observe(finding("search", "a")) == WatchOutcome.OPENED
    assert await restarted.observe(finding("search", "b")) == WatchOutcome.RATE_LIMITED
    r.clock.now += 61
    assert await restarted.observe(finding("search", "b")) == WatchOutcome.OPENED
    assert len(r.posts()) == 5 and len(await _items(db)) == 5


async def test_an_active_silence_suppresses_an_expired_one_does_not(db: Database, slack: FakeSlack,
                                                                     sqlite_url: str) -> None:
    r = rig(db, slack, sqlite_url)
    watch = r.service()
    settings = Settings(database={"url": sqlite_url})  # type: ignore[arg-type]
    made = await silences.create(db, settings, OPERATOR, None, {"service": "checkout", "signal": "latency_p99"},
                                 3600, "known slow during the migration", now=r.clock.now - 60)
    assert await watch.observe(finding()) == WatchOutcome.SILENCED
    assert await watch.observe(finding(kind=WatchKind.SLO_BURN, key="slo:checkout-latency")) == WatchOutcome.SILENCED
    # matchers on the other labels: the kind, the alert-like name, regexes, negation
    await silences.create(db, settings, OPERATOR, None, {"kind": "slo_burn", "alertname": "~slo.*", "service": "!checkout"},
                          3600, now=r.clock.now)
    assert await watch.observe(finding("payments", "availability", kind=WatchKind.SLO_BURN,
                                       key="slo:payments")) == WatchOutcome.SILENCED
    assert await watch.observe(finding("payments", "error_rate")) == WatchOutcome.OPENED  # a degradation: not matched
    assert len(r.posts()) == 1 and [i.service for i in await _items(db)] == ["payments"]
    r.clock.now = made.ends_at + 1  # the first silence has expired
    assert await watch.observe(finding()) == WatchOutcome.OPENED
    assert len(r.posts()) == 2


async def test_a_maintenance_window_mutes_early_warnings_too(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    """Planned work on a service (``triage.maintenance``) mutes its early warnings as it mutes its alerts."""
    r = rig(db, slack, sqlite_url, min_interval_s=0)
    triage = TriageSettings(maintenance=[{"matchers": {"service": "checkout"}, "starts": r.clock.now - 60,
                                          "ends": r.clock.now + 600, "comment": "db upgrade"}])
    watch = WatchService(r.settings, db, r.service().posters, clock=r.clock, maintenance=maintenance_windows(triage))
    assert await watch.observe(finding()) == WatchOutcome.SILENCED
    assert await watch.observe(finding("cart", "latency_p99")) == WatchOutcome.OPENED
    r.clock.now += 601  # the work is over
    assert await watch.observe(finding()) == WatchOutcome.OPENED
    assert len(r.posts()) == 2  # cart, then checkout once the window closed


async def test_concurrent_observes_of_one_key_open_one_item(anydb: Database, slack: FakeSlack, sqlite_url: str) -> None:
    """Four replicas (each its own engine on the same database) see the same condition at once."""
    r = rig(anydb, slack, sqlite_url)
    replicas = [Database(anydb.url) for _ in range(3)]
    try:
        services = [r.service(), *(r.service(d) for d in replicas)]
        outcomes = await asyncio.gather(*(s.observe(finding()) for s in services for _ in range(2)))
        assert sorted(outcomes) == sorted([WatchOutcome.OPENED] + [WatchOutcome.HELD] * 7)
        assert len(await _items(anydb)) == 1 and len(r.posts()) == 1
        # other keys of the same service at once: the rate limit holds across replicas too
        outcomes = await asyncio.gather(*(s.observe(finding("payments", f"s{i}"))
                                          for i, s in enumerate(services)))
        assert sorted(outcomes) == sorted([WatchOutcome.OPENED] + [WatchOutcome.RATE_LIMITED] * 3)
        assert len(await _items(anydb)) == 2 and len(r.posts()) == 2
    finally:
        for d in replicas:
            await d.dispose()


async def test_the_database_refuses_a_second_live_item_per_key(anydb: Database) -> None:
    async with anydb.begin() as s:
        s.add(WatchItem(key="k", kind="degradation", service="a", status="closed", opened_at=1, last_seen_at=1))
        s.add(WatchItem(key="k", kind="degradation", service="a", status="closed", opened_at=2, last_seen_at=2))
        s.add(WatchItem(key="k", kind="degradation", service="a", status="escalated", opened_at=3, last_seen_at=3))
    with pytest.raises(IntegrityError):
        async with anydb.begin() as s:
            s.add(WatchItem(key="k", kind="degradation", service="a", status="open", opened_at=4, last_seen_at=4))


async def test_failing_sources_are_said_in_the_post(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    r = rig(db, slack, sqlite_url)
    down = GitHubChanges(HttpSource("github", HttpConfig("http://127.0.0.1:9", timeout_s=2, retries=0)),
                         repo="acme/checkout", service="checkout")
    r.sources_factory = lambda: Sources(changes=[down])
    assert await r.service().observe(finding()) == WatchOutcome.OPENED
    (post,) = r.posts()
    assert "Could not check" in _text(post) and "github" in _text(post)
    (item,) = await _items(db)
    assert item.detail["missing"] and item.detail["missing"][0].startswith("github")

    def broken() -> Sources:
        raise RuntimeError("sources.changes[0]: bad token file")

    r.sources_factory = broken
    assert await r.service().observe(finding("payments")) == WatchOutcome.OPENED
    assert "could not be built" in _text(r.posts()[1])
    r.sources_factory = Sources  # none configured
    assert await r.service().observe(finding("search")) == WatchOutcome.OPENED
    assert "no change source configured" in _text(r.posts()[2])


async def test_disabled_takes_nothing(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    r = rig(db, slack, sqlite_url, enabled=False)
    assert await r.service().observe(finding()) == WatchOutcome.DISABLED
    assert await _items(db) == [] and r.posts() == []


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "page"}, "kind"), ({"service": " "}, "service"), ({"key": ""}, "key"), ({"value": float("nan")}, "value"),
    ({"started_at": 0}, "started_at"), ({"points": [(1.0, 2.0, 3.0)]}, "points[0]"),
    ({"points": [(1.0, float("inf"))]}, "points[0]"), ({"title": "x" * 501}, "title"),
])
def test_a_bad_finding_is_refused_with_its_field(change: dict, field: str) -> None:
    base = {"kind": "degradation", "key": "k", "service": "checkout", "signal": "s", "title": "t", "summary": "",
            "started_at": T0}
    with pytest.raises(WatchFindingError) as err:
        WatchFinding(**{**base, **change})
    assert err.value.field == field and field in str(err.value)


@pytest.mark.parametrize("bad", [{"min_interval_s": -1}, {"service_intervals": {"search": -5}}, {"intervall": 3},
                                 {"source_timeout_s": 0}])
def test_bad_watch_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        WatchSettings(**bad)
