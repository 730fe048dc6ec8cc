"""Grafana Explore links: every query the engine ran can be opened in the team's own Grafana.

Links use the Explore URL of Grafana 10 and later (``/explore?schemaVersion=1&panes=...``), with the time
range in epoch milliseconds so the link shows exactly the window the engine looked at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from integrations.base import TimeWindow
from integrations.settings import GrafanaSettings


@dataclass(frozen=True, slots=True)
class GrafanaLinks:
    settings: GrafanaSettings

    def _explore(self, datasource_uid: str, ds_type: str, query: dict[str, Any], window: TimeWindow | None) -> str:
        pane: dict[str, Any] = {
            "datasource": datasource_uid,
            "queries": [{"refId": "A", "datasource": {"type": ds_type, "uid": datasource_uid}, **query}],
        }
        if window is not None:
            pane["range"] = {"from": str(int(window.start * 1000)), "to": str(int(window.end * 1000))}
        params = {
            "schemaVersion": "1",
            "orgId": str(self.settings.org_id),
            "panes": json.dumps({"onwatch": pane}, separators=(",", ":")),
        }
        return f"{self.settings.url.rstrip('/')}/explore?{urlencode(params)}"

    def metrics(self, expr: str, window: TimeWindow) -> str:
        return self._explore(self.settings.metrics_datasource_uid, "prometheus",
                             {"expr": expr, "range": True}, window)

    def logs(self, expr: str, window: TimeWindow) -> str:
        return self._explore(self.settings.logs_datasource_uid, "loki",
                             {"expr": expr, "queryType": "range"}, window)

    def trace(self, trace_id: str, window: TimeWindow | None = None) -> str:
        uid, kind = self.settings.traces_datasource_uid, self.settings.traces_datasource_type
        query: dict[str, Any] = {"queryType": "traceql" if kind == "tempo" else "traceId", "query": trace_id}
        return self._explore(uid, kind, query, window)
