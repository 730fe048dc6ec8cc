"""Loki, Tempo and Jaeger sources against fake servers speaking their wire formats."""

from __future__ import annotations

import pytest

from integrations.base import SourceBadResponse, SourceRejected, SourceTooLarge, TimeWindow, call_tool
from integrations.grafana import GrafanaLinks
from integrations.http import HttpConfig, HttpSource
from integrations.jaeger import JaegerSource
from integrations.loki import LokiSource
from integrations.settings import GrafanaSettings
from integrations.tempo import TempoSource, hex_id, otlp_spans
from tests.fakes import FAULTS, REQUESTS, Fault
from tests.fakes import jaeger as fake_jaeger
from tests.fakes import loki as fake_loki
from tests.fakes import tempo as fake_tempo
from tests.fakes.loki import LogEntry
from tests.fakes.traces import FakeSpan
from tests.integrations_fixtures import serve

T0 = 1_700_000_000


def _log_entries() -> list[LogEntry]:
    out = []
    for i in range(120):  # one line a second for two minutes
        svc = "carts" if i % 2 else "orders"
        if svc == "carts" and 60 <= i < 90:
            line = f"level=error msg=\"db timeout\" trace_id=4bf92f3577b34da6a3ce929d0e0e{i:04d}"
        else:
            line = f"level=info msg=\"ok {i}\""
        out.append(LogEntry((T0 + i) * 10**9, {"service": svc, "namespace": "shop"}, line))
    out.append(LogEntry((T0 + 70) * 10**9, {"service": "orders", "namespace": "shop", "level": "fatal"},
                        "panic: nil map"))
    return out


def _loki(url: str, **kw: object) -> LokiSource:
    http = HttpSource("loki", HttpConfig(base_url=url, timeout_s=2, retries=1, backoff_s=0.01))
    return LokiSource(http, base_url=url, selector='namespace="shop"', **kw)  # type: ignore[arg-type]


async def test_loki_error_counts_and_lines() -> None:
    app = fake_loki.make_app(_log_entries())
    async with serve(app) as url:
        src = _loki(url, max_points=13)
        w = TimeWindow(T0, T0 + 120)
        counts = {s.service: s for s in await src.error_counts(w)}
        assert set(counts) == {"carts", "orders"}
        carts = counts["carts"]
        assert carts.signal == "log_errors" and len(carts.points) <= 13
        step = carts.points[1][0] - carts.points[0][0]
        assert step == 10
        assert sum(v for _, v in carts.points) == 15  # odd seconds 61..89
        assert all(v == 0 for t, v in carts.points if t <= T0 + 60)  # zero-filled, not missing
        assert sum(v for _, v in counts["orders"].points) == 1
        assert 'namespace="shop"' in carts.query and "count_over_time" in carts.query

        lines = await src.lines(w, ["carts"], limit=20)
        assert len(lines) == 20 and all(ln.service == "carts" for ln in lines)
        errors = [ln for ln in lines if ln.level == "ERROR"]
        assert len(errors) == 15 and errors[0].trace_id.startswith("4bf92f35")  # error lines come first
        assert lines == sorted(lines, key=lambda ln: ln.time)
        fatal = await src.lines(w, ["orders"], limit=5)
        assert any(ln.level == "FATAL" and ln.message == "panic: nil map" for ln in fatal)
        q = app[REQUESTS][-1].query
        assert q["direction"] == "backward" and q["limit"] == "5"
        await src.aclose()


async def test_loki_failures_are_missing_evidence() -> None:
    app = fake_loki.make_app(_log_entries())
    async with serve(app) as url:
        src = _loki(url)
        w = TimeWindow(T0, T0 + 120)
        app[FAULTS].push(Fault("delay", delay_s=5))
        res = await call_tool("loki", "error counts", src.error_counts(w), timeout_s=10)
        assert res.status == "timeout" and res.error == "loki: timed out after 2 s"
        app[FAULTS].push(Fault("truncated"))
        with pytest.raises(SourceBadResponse):
            await src.lines(w)
        app[FAULTS].push(Fault("huge", size=10_000_000))
        src.http.cfg = HttpConfig(base_url=url, max_bytes=50_000)
        with pytest.raises(SourceTooLarge):
            await src.lines(w)
        await src.aclose()


def _spans() -> list[FakeSpan]:
    spans = []
    for i in range(6):
        tid = f"{i:032x}"
        start = (T0 + 10 * i) * 10**9
        slow = i == 2
        failed = i == 4
        spans.append(FakeSpan(tid, f"{i:016x}", "", "front-end", "GET /", start, (1500 if slow else 20) * 10**6))
        spans.append(FakeSpan(tid, f"{i + 100:016x}", f"{i:016x}", "carts", "getCart", start + 10**6,
                              (1400 if slow else 10) * 10**6, error=failed))
    return spans


async def test_tempo_slow_and_failed_traces() -> None:
    app = fake_tempo.make_app(_spans())
    async with serve(app) as url:
        http = HttpSource("tempo", HttpConfig(base_url=url, timeout_s=2, retries=0))
        src = TempoSource(http, base_url=url, slow_ms=1000,
                          grafana=GrafanaLinks(GrafanaSettings(url="https://grafana.example")))
        w = TimeWindow(T0, T0 + 100)
        spans = await src.spans(w, ["carts"])
        assert {s.trace_id for s in spans} == {f"{2:032x}", f"{4:032x}"}  # slow and failed, whole traces
        assert len(spans) == 4
        child = next(s for s in spans if s.service == "carts" and s.trace_id.endswith("4"))
        assert child.status == "error" and child.parent_span_id == f"{4:016x}" and child.operation == "getCart"
        assert child.duration_ms == pytest.approx(10) and child.start_time == pytest.approx(T0 + 40.001)
        assert "resource.service.name = \"carts\"" in app[REQUESTS][0].query["q"]
        one = await src.trace(f"{2:032x}")
        assert len(one) == 2 and {s.service for s in one} == {"front-end", "carts"}
        assert src.link("abc").startswith("https://grafana.example/explore?")
        with pytest.raises(SourceRejected, match="404"):
            await src.trace("f" * 32)
        app[FAULTS].push(Fault("status", 500, path_prefix="/api/search"))
        res = await call_tool("tempo", "spans", src.spans(w), timeout_s=5)
        assert res.status == "error" and "HTTP 500" in res.error
        await src.aclose()


def test_hex_id_forms() -> None:
    assert hex_id("AAAAAAAAAAAAAAAAAAAAAg==", 32) == "0" * 31 + "2"
    assert hex_id("2", 32) == "0" * 31 + "2"
    assert hex_id("4BF92F3577B34DA6A3CE929D0E0E4736", 32) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert hex_id("", 16) == ""


async def test_jaeger_slow_and_failed_traces() -> None:
    app = fake_jaeger.make_app(_spans())
    async with serve(app) as url:
        http = HttpSource("jaeger", HttpConfig(base_url=url, timeout_s=2, retries=0))
        src = JaegerSource(http, base_url=url, slow_ms=1000, max_traces=40)
        w = TimeWindow(T0, T0 + 100)
        spans = await src.spans(w)  # no service: every known service is searched
        assert {s.trace_id for s in spans} == {f"{2:032x}", f"{4:032x}"}
        failed = [s for s in spans if s.status == "error"]
        assert [(s.service, s.operation) for s in failed] == [("carts", "getCart")]
        assert all(s.duration_ms >= 1000 for s in spans if s.trace_id.endswith("2"))
        only = await src.spans(w, ["front-end"])
        assert {s.trace_id for s in only} == {f"{2:032x}"}  # front-end itself never failed
        tr = await src.trace(f"{4:032x}")
        assert len(tr) == 2 and tr[1].parent_span_id == tr[0].span_id
        assert src.link("ab") == f"{url}/trace/ab"
        app[FAULTS].push(Fault("truncated", path_prefix="/api/traces/"))
        with pytest.raises(SourceBadResponse):
            await src.trace(f"{4:032x}")
        await src.aclose()


def test_otlp_spans_that_left_status_unset_are_read_by_their_http_answer() -> None:
    """Status UNSET with http.response.status_code 503 is a failed request (as Jaeger's tags are read);
    a 404 answered fine; no status and no HTTP answer says nothing."""
    def span(sid: str, attrs: list[dict]) -> dict:
        return {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": sid, "name": "GET /cart",
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000",
                "status": {}, "attributes": attrs}
    doc = {"batches": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "carts"}}]},
                        "scopeSpans": [{"spans": [
                            span("b7ad6b7169203331", [{"key": "http.response.status_code", "value": {"intValue": "503"}}]),
                            span("b7ad6b7169203332", [{"key": "http.status_code", "value": {"intValue": 404}}]),
                            span("b7ad6b7169203333", [])]}]}]}
    assert [s.status for s in otlp_spans(doc, "tempo")] == ["error", "ok", ""]
