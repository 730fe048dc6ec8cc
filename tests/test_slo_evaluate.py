"""SLO evaluation without a source: the queries (the recording rules' own expressions), the status maths from
hand-computed window ratios, and what a check ingests or resolves. Prometheus answering those queries is
``tests/test_slo_check.py``."""

from __future__ import annotations

import pytest
import yaml

from bot.slo.check import fmt_budget, fmt_burn, warning_of
from bot.slo.evaluate import SloState, status_of, window_queries, windows_read
from bot.slo.model import SLO
from bot.slo.rules import RECORD_PREFIX, prom_duration, rules
from bot.slo_check import FiredAlert, alerts_for, fingerprint_of, page_alert

H, D = 3600.0, 86400.0
WINDOWS_30D = [300.0, 1800.0, H, 6 * H, 3 * D, 30 * D]


def slo(**over: object) -> SLO:
    fields: dict[str, object] = {"name": "api", "service": "checkout", "objective": 0.999, "period": "30d",
                                 "good": 'http_requests_total{code!~"5.."}', "total": "http_requests_total"}
    fields.update(over)
    return SLO.model_validate(fields)


def answers(*ratios: float | None) -> dict[float, float | None]:
    """Ratios for the 30-day windows, shortest first: 5m, 30m, 1h, 6h, 3d, 30d."""
    return dict(zip(WINDOWS_30D, ratios, strict=True))


# --- queries ------------------------------------------------------------------------------------------------------

def test_the_queries_are_the_recording_rules_plus_the_period() -> None:
    s = slo()
    got = window_queries(s)
    assert [q.window_s for q in got] == WINDOWS_30D
    records = {r["record"]: r["expr"] for r in yaml.safe_load(rules(s))["groups"][0]["rules"] if "record" in r}
    for q in got[:-1]:
        assert q.expr == records[RECORD_PREFIX + prom_duration(q.window_s)]
    assert got[-1].expr == ('1 - (sum(rate(http_requests_total{code!~"5.."}[30d])) '
                            "/ sum(rate(http_requests_total[30d])))")


def test_a_signal_query_is_the_share_of_time_on_the_wrong_side() -> None:
    s = slo(good=None, total=None, signal="latency_p99", threshold=0.5, good_when="below")
    q = {w.window_s: w.expr for w in window_queries(s, "max(lat)")}
    # Good below 0.5 s: bad at or above it; the hour is sampled every 60 s (ten per window, at most a minute).
    assert q[H] == "avg_over_time((max((max(lat)) >= bool 0.5))[1h:1m])"
    assert q[300.0] == "avg_over_time((max((max(lat)) >= bool 0.5))[5m:30s])"
    with pytest.raises(ValueError, match="signal_query"):
        window_queries(s)


def test_scaled_windows_that_coincide_are_read_once() -> None:
    # 25 h: 1 h × 25/720 = 125 s, 5 min → 10.41666… s, 6 h → 750 s (also the ticket's short window), 30 min →
    # 62.5 s, 3 d → 9000 s; plus the period, 90000 s: six windows, not seven.
    assert windows_read(slo(period="25h")) == pytest.approx([300 * 25 / 720, 62.5, 125.0, 750.0, 9000.0, 90000.0])


# --- status maths -------------------------------------------------------------------------------------------------

def test_status_burns_and_budget_by_hand() -> None:
    # 0.999: budget 0.001. 2 % over 5 min and 1 h is 20x (page); 0.3 % over 6 h is 3x; over the period 0.04 %
    # bad spent 40 % of the budget: 60 % left.
    st = status_of(slo(), 1.0, answers(0.02, 0.01, 0.02, 0.003, 0.0005, 0.0004))
    assert st.burns == pytest.approx({300.0: 20.0, 1800.0: 10.0, H: 20.0, 6 * H: 3.0, 3 * D: 0.5, 30 * D: 0.4})
    assert st.budget_left == pytest.approx(0.6)
    assert st.state == SloState.PAGE and st.decision.window is not None and st.decision.window.long == H
    assert st.no_data == () and dict(st.errors) == {}


def test_a_slow_burn_is_a_ticket_and_an_overspent_budget_goes_negative() -> None:
    # 1.5x over 3 days and 6 hours; 0.15 % over the period is 150 % of the budget: -50 % left.
    st = status_of(slo(), 1.0, answers(0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015))
    assert st.state == SloState.TICKET and st.budget_left == pytest.approx(-0.5)


def test_no_traffic_is_no_data_never_a_burn() -> None:
    nan = float("nan")
    st = status_of(slo(), 1.0, answers(nan, nan, None, None, None, None))
    assert st.state == SloState.NO_DATA and st.budget_left is None and st.burns == {}
    assert st.no_data == tuple(WINDOWS_30D)
    # Only the period answered: there is a budget but no burn window to judge.
    st = status_of(slo(), 1.0, answers(None, None, None, None, None, 0.0002))
    assert st.state == SloState.NO_DATA and st.budget_left == pytest.approx(0.8)
    # Some windows quiet, others fine: ok, with the quiet ones named.
    st = status_of(slo(), 1.0, answers(None, 0.0, 0.0, 0.0, 0.0, 0.0))
    assert st.state == SloState.OK and st.no_data == (300.0,)


def test_a_failed_query_makes_the_state_unknown_unless_something_fires() -> None:
    st = status_of(slo(), 1.0, answers(0.0, 0.0, 0.0, 0.0, 0.0, 0.0), {300.0: "prometheus: timed out"})
    assert st.state == SloState.ERROR and dict(st.errors) == {300.0: "prometheus: timed out"}
    st = status_of(slo(), 1.0, answers(0.02, 0.02, 0.02, 0.0, 0.0, 0.0), {3 * D: "prometheus: timed out"})
    assert st.state == SloState.PAGE  # the evidence that fires is there; the failed window cannot unfire it


def test_counter_skew_is_clamped() -> None:
    st = status_of(slo(), 1.0, answers(-0.0001, 0.0, 0.0, 0.0, 0.0, 1.2))
    assert st.ratios[300.0] == 0.0 and st.budget_left == pytest.approx(1 - 1000.0)


# --- what the check sends -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("burn", "text"), [(20.0, "20"), (14.4, "14"), (3.41667, "3.4"), (0.3763, "0.38"),
                                            (0.1, "0.1"), (9.96, "10"), (99.7, "100"), (1000.0, "1000"),
                                            (123.4, "123")])
def test_fmt_burn_keeps_two_figures(burn: float, text: str) -> None:
    assert fmt_burn(burn) == text


def test_budget_is_shown_in_whole_percent() -> None:
    assert (fmt_budget(0.6927), fmt_budget(-0.7625), fmt_budget(None)) == ("69%", "-76%", "unknown")


def test_a_page_is_one_alert_per_slo_whichever_pair_fires() -> None:
    fast = status_of(slo(), 10.0, answers(0.02, 0.0, 0.02, 0.0, 0.0, 0.0004))
    slower = status_of(slo(), 20.0, answers(0.0, 0.007, 0.0, 0.007, 0.0, 0.0004))  # 7x over 6 h and 30 min
    a, b = page_alert(fast, 10.0), page_alert(slower, 10.0)
    assert a.fingerprint == b.fingerprint == fingerprint_of("api") == "SLOErrorBudgetBurn:api"
    assert (a.source, a.name, a.status, a.severity, a.service) == ("slo", "SLOErrorBudgetBurn", "firing", "critical",
                                                                   "checkout")
    assert a.labels == {"alertname": "SLOErrorBudgetBurn", "slo": "api", "service": "checkout", "severity": "page",
                        "long_window": "1h", "short_window": "5m"}
    assert (b.labels["long_window"], b.labels["short_window"]) == ("6h", "30m")
    assert a.annotations["summary"] == ("SLO api of checkout burns its 30d error budget at 20x over 1h and 20x "
                                        "over 5m (page at 14.4x)")
    assert a.annotations["burn_rates"] == "5m: 20x, 30m: 0x, 1h: 20x, 6h: 0x, 3d: 0x"
    assert a.annotations["budget_left"] == "60%" and a.starts_at == 10.0


def test_what_a_check_ingests() -> None:
    s_page, s_ok, s_err, s_none = slo(name="paging"), slo(name="calm"), slo(name="unknown"), slo(name="silent")
    page = status_of(s_page, 50.0, answers(0.02, 0.0, 0.02, 0.0, 0.0, 0.0))
    ok = status_of(s_ok, 50.0, answers(0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    err = status_of(s_err, 50.0, {}, dict.fromkeys(WINDOWS_30D, "prometheus: unreachable"))
    none = status_of(s_none, 50.0, {})
    assert none.state == SloState.NO_DATA
    fired = {name: FiredAlert(name, "checkout", "critical", {"slo": name, "alertname": "SLOErrorBudgetBurn"}, 7.0)
             for name in ("paging", "calm", "unknown", "silent", "removed")}
    out = alerts_for([page, ok, err, none], fired, [s_page, s_ok, s_err, s_none], 50.0)
    got = [(a.fingerprint, a.status, a.starts_at, a.ends_at) for a in out]
    assert got == [
        ("SLOErrorBudgetBurn:paging", "firing", 7.0, None),  # still paging: keeps when it began
        ("SLOErrorBudgetBurn:calm", "resolved", 7.0, 50.0),  # the burn stopped
        # "unknown" failed every query and "silent" has no data: neither resolved nor re-fired
        ("SLOErrorBudgetBurn:removed", "resolved", 7.0, 50.0),  # no longer configured
    ]
    assert out[1].labels == fired["calm"].labels and "no longer configured" in out[2].annotations["summary"]
    # Nothing fired before: a page begins now, a calm SLO sends nothing.
    assert [(a.status, a.starts_at) for a in alerts_for([page, ok], {}, [s_page, s_ok], 50.0)] == [("firing", 50.0)]


def test_a_ticket_becomes_a_warning() -> None:
    st = status_of(slo(), 99.0, answers(0.0015, 0.0015, 0.0015, 0.002, 0.0015, 0.0012))
    w = warning_of(st)
    assert (w.slo, w.service, w.objective, w.period, w.at) == ("api", "checkout", 0.999, "30d", 99.0)
    assert w.burns == pytest.approx({"3d": 1.5, "6h": 2.0}) and w.budget_left == pytest.approx(-0.2)
    assert (w.key, w.labels) == ("slo:api", {"slo": "api", "period": "30d", "objective": "0.999"})
    assert w.title == "SLO api of checkout burns its 30d error budget too fast"
    assert w.text == ("SLO api of checkout burns its 30d error budget at 1.5x over 3d and 2x over 6h: at this rate it "
                      "runs out before the period ends (-20% left)")
