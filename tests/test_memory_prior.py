"""The memory prior: only memories a person confirmed, or whose fix held, may move a ranking.

The engine's own unconfirmed guess coming back as a prior would raise the confidence of the same
(possibly wrong) answer on a look-alike; it is context only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.investigate.engine import PastIncident, investigate
from bot.investigate.report import Cause, Report
from bot.investigate.scope import scope_from_alertmanager
from bot.investigate.tiebreak import tie_broken
from integrations.replay import ReplayCase, replay_sources
from tests.investigate_fixtures import INJECT, add_on, chain, make_case, up_on

SYMPTOM = add_on("frontend", "latency_p90", 0.2, INJECT + 30)


def _ranking(r: Report) -> list[tuple[str, str, float]]:
    return [(c.service, c.kind, c.confidence) for c in r.causes]


@pytest.mark.parametrize("cause", [("payment", "cpu_saturation"), ("cache", "network_saturation"),
                                   ("frontend", "traffic_surge")])
async def test_unconfirmed_memories_never_change_a_ranking(tmp_path: Path, cause: tuple[str, str]) -> None:
    case = ReplayCase(make_case(tmp_path, chain(up_on("payment", "cpu", 4.5), up_on("cache", "network_tx", 2.0),
                                                SYMPTOM)))
    scope = scope_from_alertmanager(case.alert_payload, now=case.now)
    plain = await investigate(scope, replay_sources(case))
    past = [PastIncident("INC-OLD", ("frontend",), cause[0], cause[1], "frontend slow", grade="unconfirmed")]
    with_memory = await investigate(scope, replay_sources(case), past)
    assert _ranking(with_memory) == _ranking(plain)
    assert with_memory.abstained == plain.abstained
    # shown as context all the same
    assert with_memory.to_dict()["similar"][0]["incident_id"] == "INC-OLD"


@pytest.mark.parametrize("grade", ["confirmed", "verified"])
async def test_confirmed_or_verified_memories_act_as_a_prior(tmp_path: Path, grade: str) -> None:
    case = ReplayCase(make_case(tmp_path, chain(up_on("payment", "cpu", 4.5), SYMPTOM)))
    scope = scope_from_alertmanager(case.alert_payload, now=case.now)
    plain = await investigate(scope, replay_sources(case))
    past = [PastIncident("INC-OLD", ("frontend",), "payment", "cpu_saturation", grade=grade)]
    recalled = await investigate(scope, replay_sources(case), past)
    assert recalled.causes[0].service == "payment"
    assert recalled.causes[0].confidence > plain.causes[0].confidence


def _tied_report(abstained: bool = True, separation: float = 0.15) -> Report:
    causes = [Cause("search", "dependency_failure", 0.25, [], score=1.0),
              Cause("adoptions", "dependency_failure", 0.21, [], score=0.85),
              Cause("db", "dependency_failure", 0.1, [], score=0.4)]
    return Report(abstained=abstained, ranked_services=[c.service for c in causes], causes=causes, evidence=[],
                  steps=[], missing=[], reason="not separated", separation=separation)


def test_a_confirmed_look_alike_orders_only_what_the_evidence_left_tied() -> None:
    confirmed = PastIncident("INC-OLD", ("site",), "adoptions", "dependency_failure", grade="confirmed")
    out = tie_broken(_tied_report(), [confirmed])
    assert out.ranked_services == ["adoptions", "search", "db"] and out.abstained and out.reason == "not separated"
    assert out.steps[-1].looked_at == "Memory: INC-OLD (confirmed) was caused in adoptions"
    # the engine's own old guess never reorders anything
    guess = PastIncident("INC-OLD", ("site",), "adoptions", "dependency_failure", grade="unconfirmed")
    assert tie_broken(_tied_report(), [guess]).ranked_services == ["search", "adoptions", "db"]
    # a clearly separated answer is never overturned
    assert tie_broken(_tied_report(False, 0.5), [confirmed]).ranked_services == ["search", "adoptions", "db"]
    # a cause the evidence put well behind is not lifted
    far = PastIncident("INC-DB", ("site",), "db", "dependency_failure", grade="verified")
    assert tie_broken(_tied_report(), [far]).ranked_services == ["search", "adoptions", "db"]
    # the best look-alike agreeing with the leader settles it
    lead = PastIncident("INC-S", ("site",), "search", "dependency_failure", grade="verified")
    assert tie_broken(_tied_report(), [lead, confirmed]).ranked_services == ["search", "adoptions", "db"]
