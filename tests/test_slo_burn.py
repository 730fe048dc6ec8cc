"""SLO burn-rate core (issue 20): the workbook's windows and factors checked against hand-computed numbers,
the model's validation messages, and the generated rule file against ``promtool check rules``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bot.cli import main as cli_main
from bot.config import load_settings
from bot.durations import parse_duration
from bot.errors import ConfigError
from bot.slo.burn import Window, budget_left, burn_rate, evaluate, windows_for
from bot.slo.model import SLO
from bot.slo.rules import ALERT_NAME, RECORD_PREFIX, prom_duration, rules

H, D = 3600.0, 86400.0
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)


def slo(**over: object) -> SLO:
    fields: dict[str, object] = {"name": "api", "service": "checkout", "objective": 0.999, "period": "30d",
                                 "good": 'http_requests_total{code!~"5.."}', "total": "http_requests_total"}
    fields.update(over)
    return SLO.model_validate(fields)


def ratios(**by_window: float) -> dict[float, float]:
    """Error ratios keyed by window seconds, written ``h1=0.01`` (1 h) or ``m5=...`` (5 min) or ``d3`` (3 days)."""
    unit = {"m": 60.0, "h": H, "d": D}
    return {float(k[1:]) * unit[k[0]]: v for k, v in by_window.items()}


# --- burn rate and budget -----------------------------------------------------------------------------------------

def test_burn_rate_is_bad_fraction_over_budget() -> None:
    # Budget of 0.999 is 0.001: a bad fraction of 0.0144 spends it 14.4 times too fast, 0.001 exactly on time.
    assert burn_rate(0.0144, 0.999) == pytest.approx(14.4)
    assert burn_rate(0.001, 0.999) == pytest.approx(1.0)
    assert burn_rate(0.0, 0.999) == 0.0
    # 99 %: budget 0.01; 5 % bad is 5x.
    assert burn_rate(0.05, 0.99) == pytest.approx(5.0)


@pytest.mark.parametrize(("bad", "objective"), [(-0.1, 0.999), (1.5, 0.999), (float("nan"), 0.99),
                                                (0.1, 1.0), (0.1, 0.0)])
def test_burn_rate_refuses_what_is_not_a_fraction(bad: float, objective: float) -> None:
    with pytest.raises(ValueError):
        burn_rate(bad, objective)


def test_budget_left_is_the_unspent_share_and_goes_negative_when_overspent() -> None:
    # 0.999 over the period: 0.0004 bad spends 40 % of the 0.001 budget, 60 % left; 0.0015 bad is 150 % spent.
    assert budget_left(0.0004, 0.999) == pytest.approx(0.6)
    assert budget_left(0.0, 0.999) == pytest.approx(1.0)
    assert budget_left(0.001, 0.999) == pytest.approx(0.0)
    assert budget_left(0.0015, 0.999) == pytest.approx(-0.5)


# --- windows ------------------------------------------------------------------------------------------------------

def test_thirty_day_windows_are_the_workbooks() -> None:
    assert windows_for(30 * D) == [Window(1 * H, 300.0, 14.4, "page"), Window(6 * H, 1800.0, 6.0, "page"),
                                   Window(3 * D, 6 * H, 1.0, "ticket")]


def test_seven_day_windows_scale_by_seven_thirtieths() -> None:
    # 1 h × 7/30 = 14 min (840 s); 5 min × 7/30 = 70 s (1.17 min); 6 h × 7/30 = 84 min (5040 s);
    # 30 min × 7/30 = 7 min (420 s); 3 d × 7/30 = 16.8 h (60480 s); its 6 h short window is again 84 min.
    got = [(w.long, w.short, w.factor, w.severity) for w in windows_for(7 * D)]
    assert got == [pytest.approx((840.0, 70.0, 14.4, "page")), pytest.approx((5040.0, 420.0, 6.0, "page")),
                   pytest.approx((60480.0, 5040.0, 1.0, "ticket"))]


def test_scaled_windows_spend_the_same_share_of_budget() -> None:
    # The factors keep their meaning: factor × long / period is 2 %, 5 %, 10 % of the budget on any period.
    for period in (7 * D, 30 * D, 90 * D):
        shares = [w.factor * w.long / period for w in windows_for(period)]
        assert shares == pytest.approx([0.02, 0.05, 0.10])


def test_windows_need_a_positive_period() -> None:
    with pytest.raises(ValueError):
        windows_for(0)


# --- evaluate -----------------------------------------------------------------------------------------------------

def test_fourteen_point_four_over_an_hour_and_five_minutes_pages() -> None:
    # 0.0144 / 0.001 = 14.4 on both windows of the first pair: page, from the 1 h / 5 min pair.
    d = evaluate(ratios(h1=0.0144, m5=0.02, h6=0.0, m30=0.0, d3=0.0), slo())
    assert d.severity == "page"
    assert d.window == Window(H, 300.0, 14.4, "page")
    assert d.pairs[0].long_burn == pytest.approx(14.4) and d.pairs[0].short_burn == pytest.approx(20.0)


def test_a_recovered_short_window_keeps_the_page_quiet() -> None:
    # The hour still shows 14.4x but the last 5 min burn 2x (0.002 / 0.001): the fire is out, no page.
    d = evaluate(ratios(h1=0.0144, m5=0.002, h6=0.0024, m30=0.002, d3=0.0004), slo())
    assert d.severity is None and d.window is None
    assert [p.fires for p in d.pairs] == [False, False, False]


def test_just_below_the_factor_does_not_fire() -> None:
    # 0.0143 is 14.3x, under 14.4.
    assert evaluate(ratios(h1=0.0143, m5=0.05), slo()).severity is None


def test_six_times_over_six_hours_and_thirty_minutes_pages() -> None:
    # 0.006 / 0.001 = 6 on 6 h and 30 min; the 1 h pair is at 6x too, under its 14.4.
    d = evaluate(ratios(h1=0.006, m5=0.006, h6=0.006, m30=0.006, d3=0.0005), slo())
    assert d.severity == "page" and d.window == Window(6 * H, 1800.0, 6.0, "page")


def test_one_times_over_three_days_and_six_hours_opens_a_ticket() -> None:
    # 0.001 / 0.001 = 1 on 3 d and 6 h; 6 h at 1x is far below the 6x page.
    d = evaluate(ratios(h1=0.001, m5=0.001, h6=0.001, m30=0.001, d3=0.001), slo())
    assert d.severity == "ticket" and d.window == Window(3 * D, 6 * H, 1.0, "ticket")


def test_a_page_wins_over_a_ticket() -> None:
    # Everything burns 20x: all three pairs fire, the most severe and fastest one is reported.
    d = evaluate(ratios(h1=0.02, m5=0.02, h6=0.02, m30=0.02, d3=0.02), slo())
    assert [p.fires for p in d.pairs] == [True, True, True]
    assert d.severity == "page" and d.window is not None and d.window.long == H


def test_a_missing_window_cannot_fire_its_pair() -> None:
    # No 5 min ratio: the 1 h pair cannot fire even at 50x; the 6 h pair still pages.
    d = evaluate(ratios(h1=0.05, h6=0.007, m30=0.007), slo())
    assert d.pairs[0].short_burn is None and not d.pairs[0].fires
    assert d.severity == "page" and d.window is not None and d.window.long == 6 * H


def test_seven_day_slo_reads_the_scaled_windows() -> None:
    # Period 7 d, objective 0.99 (budget 0.01): the page pair is 840 s / 70 s; 0.15 there is 15x -> page.
    seven = slo(period="7d", objective=0.99)
    d = evaluate({840.0: 0.15, 70.0: 0.15}, seven)
    assert d.severity == "page" and d.window is not None and d.window.long == pytest.approx(840.0)
    # The 30-day windows' keys mean nothing to it.
    assert evaluate(ratios(h1=0.15, m5=0.15), seven).severity is None


# --- model --------------------------------------------------------------------------------------------------------

def test_a_signal_slo_is_valid() -> None:
    s = slo(good=None, total=None, signal="latency_p99", threshold=0.5, good_when="below")
    assert not s.is_event_ratio and s.period_seconds == 30 * 86400 and s.error_budget == pytest.approx(0.001)


@pytest.mark.parametrize(("text", "seconds"), [("30d", 2_592_000), ("4w", 2_419_200), ("36h", 129_600),
                                               ("90m", 5400), ("45s", 45)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "1.5d", "30 days", "-1d", "1d12h", "30D", ""])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def _error(**over: object) -> tuple[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as caught:
        slo(**over)
    errors = caught.value.errors()
    assert len(errors) == 1
    return errors[0]["loc"], errors[0]["msg"]


@pytest.mark.parametrize("objective", [0, 1, 1.5, -0.2, 99.9])
def test_objective_outside_zero_one_names_the_field(objective: float) -> None:
    loc, msg = _error(objective=objective)
    assert loc == ("objective",) and ("greater than 0" in msg or "less than 1" in msg)


@pytest.mark.parametrize(("period", "why"), [("30 days", "not a duration"), ("1.5d", "not a duration"),
                                             ("12h", "shorter than 1d")])
def test_bad_period_names_the_field_and_why(period: str, why: str) -> None:
    loc, msg = _error(period=period)
    assert loc == ("period",) and why in msg


def test_no_sli_is_refused_with_both_forms_named() -> None:
    loc, msg = _error(good=None, total=None)
    assert "no SLI" in msg and "good/total" in msg and "signal/threshold/good_when" in msg


@pytest.mark.parametrize(("over", "why"), [
    ({"total": None}, "good and total go together"),
    ({"signal": "latency_p99", "threshold": 0.5, "good_when": "below"}, "not both"),
    ({"good": None, "total": None, "signal": "latency_p99", "threshold": 0.5}, "go together"),
])
def test_half_an_sli_is_refused(over: dict[str, object], why: str) -> None:
    _, msg = _error(**over)
    assert why in msg


def test_unknown_field_and_bad_name_are_named() -> None:
    assert _error(objectve=0.99)[0] == ("objectve",)
    assert _error(name='api"} or vector(1)')[0] == ("name",)
    assert _error(good_when="sideways", good=None, total=None, signal="s", threshold=1.0)[0] == ("good_when",)


# --- rules --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [(300, "5m"), (70, "1m10s"), (5040, "1h24m"), (60480, "16h48m"),
                                               (259200, "3d"), (22.5, "22s500ms")])
def test_prom_duration(seconds: float, text: str) -> None:
    assert prom_duration(seconds) == text


def test_rules_record_every_window_once_and_alert_per_pair() -> None:
    doc = yaml.safe_load(rules(slo()))
    (group,) = doc["groups"]
    records = [r for r in group["rules"] if "record" in r]
    alerts = [r for r in group["rules"] if "alert" in r]
    # 6 h is the 6 h pair's long window and the ticket's short one: five distinct windows.
    assert [r["record"] for r in records] == [RECORD_PREFIX + w for w in ("5m", "30m", "1h", "6h", "3d")]
    assert records[2]["expr"] == ('1 - (sum(rate(http_requests_total{code!~"5.."}[1h])) '
                                  "/ sum(rate(http_requests_total[1h])))")
    assert [(a["alert"], a["labels"]["severity"]) for a in alerts] == [(ALERT_NAME, "page"), (ALERT_NAME, "page"),
                                                                       (ALERT_NAME, "ticket")]
    sel = '{slo="api", service="checkout"}'
    # 14.4 × 0.001 = 0.0144; 6 × 0.001 = 0.006; 1 × 0.001 = 0.001.
    assert alerts[0]["expr"] == f"{RECORD_PREFIX}1h{sel} >= 0.0144 and {RECORD_PREFIX}5m{sel} >= 0.0144"
    assert alerts[1]["expr"] == f"{RECORD_PREFIX}6h{sel} >= 0.006 and {RECORD_PREFIX}30m{sel} >= 0.006"
    assert alerts[2]["expr"] == f"{RECORD_PREFIX}3d{sel} >= 0.001 and {RECORD_PREFIX}6h{sel} >= 0.001"


def test_signal_rules_need_the_resolved_query() -> None:
    s = slo(good=None, total=None, signal="availability", threshold=0.9, good_when="above")
    with pytest.raises(ValueError, match="signal_query"):
        rules(s)
    doc = yaml.safe_load(rules(s, signal_query="avg(up)"))
    first = doc["groups"][0]["rules"][0]
    # Good above 0.9 means bad at or below it; the 5 min window is sampled every 30 s.
    assert first["expr"] == "avg_over_time((max((avg(up)) <= bool 0.9))[5m:30s])"


CASES = {
    "event_30d": lambda: rules(slo()),
    "event_7d": lambda: rules(slo(period="7d", objective=0.995)),
    "event_45h": lambda: rules(slo(period="45h")),
    "signal_4w": lambda: rules(slo(period="4w", good=None, total=None, signal="latency_p99", threshold=0.25,
                                   good_when="below"),
                               signal_query="histogram_quantile(0.99, sum by (le) (rate(http_latency_bucket[5m])))"),
}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
@pytest.mark.parametrize("case", sorted(CASES))
def test_rules_pass_promtool(case: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.yml"
    path.write_text(CASES[case]())
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout + done.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_check_can_fail(tmp_path: Path) -> None:
    # An aggregate where a series selector belongs cannot take a range: promtool refuses it, so the check above
    # is a real check.
    path = tmp_path / "bad.yml"
    path.write_text(rules(slo(good="sum(http_requests_total)")))
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "ranges only allowed for vector selectors" in done.stdout + done.stderr


def test_no_traffic_and_counter_skew_do_not_break_evaluation() -> None:
    # NaN (no requests in 5 min) is no evidence: the 1 h pair stays quiet. A ratio of -0.0001 (good counted a
    # scrape ahead of total) reads as 0, and 1.02 as 1 (1000x on a 0.001 budget).
    d = evaluate(ratios(h1=0.05, m5=float("nan"), h6=-0.0001, m30=1.02), slo())
    assert d.pairs[0].short_burn is None and not d.pairs[0].fires
    assert d.pairs[1].long_burn == 0.0 and d.pairs[1].short_burn == pytest.approx(1000.0)
    assert d.severity is None


# ---------------------------------------------------------------- settings and `onwatch slo rules`


def _settings_file(tmp_path: Path, slos: list[dict[str, object]], metrics: bool = True) -> Path:
    doc: dict[str, object] = {"slos": slos}
    if metrics:
        doc["sources"] = {"metrics": {"url": "http://prometheus:9090", "catalog": "otel"}}
    path = tmp_path / "onwatch.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


CHECKOUT = {"name": "checkout-availability", "service": "checkout", "objective": 0.999,
            "good": 'http_requests_total{job="checkout",code!~"5.."}', "total": 'http_requests_total{job="checkout"}'}
LATENCY = {"name": "checkout-latency", "service": "checkout", "objective": 0.99, "period": "7d",
           "signal": "latency_p99", "threshold": 0.5, "good_when": "below"}


def test_slos_in_the_settings_are_validated_at_start_up(tmp_path: Path) -> None:
    settings = load_settings(_settings_file(tmp_path, [CHECKOUT, LATENCY]))
    assert [s.name for s in settings.slos] == ["checkout-availability", "checkout-latency"]
    with pytest.raises(ConfigError, match="slos.0.objective"):
        load_settings(_settings_file(tmp_path, [{**CHECKOUT, "objective": 1.5}]))
    with pytest.raises(ConfigError, match="checkout-availability is used more than once"):
        load_settings(_settings_file(tmp_path, [CHECKOUT, CHECKOUT]))


def test_slo_rules_prints_every_slo_as_one_rule_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _settings_file(tmp_path, [CHECKOUT, LATENCY])
    assert cli_main(["slo", "rules", "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == ["slo:checkout-availability", "slo:checkout-latency"]
    assert "http_server_request_duration_seconds" in text  # the signal SLI resolved through the otel catalog
    if PROMTOOL is not None:
        out = tmp_path / "rules.yaml"
        out.write_text(text)
        done = subprocess.run([PROMTOOL, "check", "rules", str(out)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    # a signal SLI with no metrics catalog, and no SLOs at all, are clear errors
    assert cli_main(["slo", "rules", "--config", str(_settings_file(tmp_path, [LATENCY], metrics=False))]) == 2
    assert "no sources.metrics catalog" in capsys.readouterr().err
    assert cli_main(["slo", "rules", "--config", str(_settings_file(tmp_path, [], metrics=False))]) == 2
    assert "no slos:" in capsys.readouterr().err
