"""The investigation engine: scope, look, hypothesise, test, narrow, report.

``investigate(scope, sources)`` is pure (no database, no chat): same data, same report.
``service`` wires it to the store, the job queue and the chat hub.
"""

from bot.investigate.engine import EngineConfig, investigate
from bot.investigate.report import Cause, EvidenceItem, Report, Step
from bot.investigate.scope import Scope

__all__ = ["Cause", "EngineConfig", "EvidenceItem", "Report", "Scope", "Step", "investigate"]
