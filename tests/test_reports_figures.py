"""The report figures on crafted timelines whose answers are worked out by hand (docs/reports.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.reports.figures import Deployment, IncidentFacts, compute, stat
from bot.reports.times import iso, shift_bounds, zone

A = IncidentFacts("INC-A", "critical", ("checkout",), opened_at=160, first_alert_at=100, acked_at=220,
                  fix_verified_at=400, resolved_at=1000, cause_service="checkout", cause_kind="deploy",
                  cause_change_at=90)
B = IncidentFacts("INC-B", "warning", ("cart",), opened_at=300, first_alert_at=50, impact_start=0,
                  resolved_at=600, cause_service="cart", cause_kind="cpu_saturation")
C = IncidentFacts("INC-C", "high", ("checkout",), opened_at=500, first_alert_at=500, acked_at=530,
                  fix_verified_at=560, resolved_at=2000, cause_service="checkout", cause_kind="deploy")
D = IncidentFacts("INC-D", "critical", (), opened_at=150)
E = IncidentFacts("INC-E", "high", (), opened_at=170)
OUTSIDE = IncidentFacts("INC-OLD", "critical", ("checkout",), opened_at=-50, first_alert_at=-60, acked_at=9999)
DEPLOYS = [Deployment("checkout", 90, "v2"), Deployment("cart", 10, "v7"), Deployment("checkout", 450, "v3"),
           Deployment("frontend", 700, "v9"), Deployment("checkout", -100, "v1")]
SHIFTS = [(0.0, 400.0), (400.0, 800.0), (800.0, 1200.0)]


@pytest.fixture
def report():
    return compute([A, B, C, D, E, OUTSIDE], DEPLOYS, 0, 1200, SHIFTS, {"received": 9})


def test_durations_have_their_known_medians_and_p90(report) -> None:
    d = report.as_dict(lambda t: str(t))
    # detect: A 160-100=60, B 300-0=300 (impact start wins over the first alert), C 0; D, E have no alerts
    assert d["time_to_detect"] == {**d["time_to_detect"], "median_s": 60.0, "p90_s": 252.0, "n": 3}
    # acknowledge: A 60, C 30; B was never acknowledged and is not counted as zero
    assert (d["time_to_acknowledge"]["median_s"], d["time_to_acknowledge"]["p90_s"], d["time_to_acknowledge"]["n"]) \
        == (45.0, 57.0, 2)
    # mitigate: A fix verified 240, B no fix so its resolution 300, C 60
    assert (d["time_to_mitigate"]["median_s"], d["time_to_mitigate"]["p90_s"], d["time_to_mitigate"]["n"]) \
        == (240.0, 288.0, 3)
    # resolve: A 840, B 300, C 1500
    assert (d["time_to_resolve"]["median_s"], d["time_to_resolve"]["p90_s"], d["time_to_resolve"]["n"]) \
        == (840.0, 1368.0, 3)
    assert d["time_to_acknowledge"]["by_severity"] == {"critical": {"median_s": 60.0, "p90_s": 60.0, "n": 1},
                                                       "high": {"median_s": 30.0, "p90_s": 30.0, "n": 1}}
    assert d["time_to_resolve"]["by_service"]["checkout"]["n"] == 2
    assert d["window"]["incidents"] == 5


def test_change_fail_rate_and_recovery(report) -> None:
    d = report.as_dict(lambda t: t)
    # four deployments in the window; A's cause names checkout@90 by its change evidence, C's cause is a
    # checkout deploy without a change item: the service's last deploy before it opened (450)
    assert d["deployments"] == 4
    assert [(f["service"], f["at"], f["incident"]) for f in d["failed_deployments"]] == \
        [("checkout", 90, "INC-A"), ("checkout", 450, "INC-C")]
    assert d["change_fail_rate"] == 0.5
    # recovery: A mitigated at 400 - 90 = 310, C at 560 - 450 = 110
    assert d["failed_deployment_recovery_s"] == {"median_s": 210.0, "p90_s": 290.0, "n": 2}


def test_pages_per_shift_against_two(report) -> None:
    d = report.as_dict(lambda t: t)["pages_per_shift"]
    # pages: D 150, A 160, E 170 in the first shift; C 500 in the second; B is a warning (no page)
    assert [s["pages"] for s in d["by_shift"]] == [3, 1, 0]
    assert (d["limit"], d["over_limit"], d["max"], d["shifts"]) == (2, 1, 3, 3)
    assert report.noise == {"received": 9}


def test_empty_sets_have_no_figure() -> None:
    r = compute([], [], 0, 100, [], {})
    d = r.as_dict(lambda t: t)
    assert d["time_to_detect"]["median_s"] is None and d["time_to_detect"]["n"] == 0
    assert d["change_fail_rate"] is None
    assert stat([5.0]).p90_s == 5.0


def test_shift_boundaries_follow_the_local_clock_across_dst() -> None:
    tz = zone("Europe/Berlin")
    start = dt.datetime(2025, 3, 29, 8, 0, tzinfo=tz).timestamp()
    shifts = shift_bounds(start, start + 2 * 86400, ["08:00", "20:00"], tz)
    hours = [(b - a) / 3600 for a, b in shifts]
    assert hours[:4] == [12, 11, 12, 12]  # the night the clocks go forward is an hour short
    assert iso(shifts[2][0], tz) == "2025-03-30T08:00:00+02:00"
    assert zone("Not/AZone") is zone("UTC") or str(zone("Not/AZone")) == "UTC"
