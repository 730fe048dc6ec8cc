"""AWS Chatbot posts of CloudWatch alarms. ``parse`` reads one part: None when it is not this vendor's, else its alerts."""

from __future__ import annotations

import re

from bot.intake.posts.common import Part, build_alert, find_urls, plain
from bot.triage.alert import AlertIn

_CW_TITLE = re.compile(r"CloudWatch Alarm\s*\|\s*([^|\n]+?)\s*\|\s*([a-z]{2}(?:-gov)?-[a-z]+-\d)(?:\s*\|\s*Account:\s*(\d+))?",
                       re.I)


def parse(p: Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _CW_TITLE.search(plain(blob))
    if not m:
        return None
    name, region, account = m.group(1).strip(), m.group(2), m.group(3) or ""
    state = (p.fields.get("State") or p.fields.get("New State") or "").upper()
    if not state:
        sm = re.search(r"\b(ALARM|OK|INSUFFICIENT_DATA)\b", blob)
        state = sm.group(1) if sm else ("OK" if ":white_check_mark:" in blob or "✅" in blob else "ALARM")
    labels = {"alertname": name, "region": region}
    if account:
        labels["aws_account"] = account
    dims = " ".join([p.fields.get("Dimensions", ""), blob])
    for dm in re.finditer(r"\b(ServiceName|FunctionName|ClusterName|DBInstanceIdentifier)\s*[=:]\s*([\w.-]+)", dims):
        key = "service" if dm.group(1) in {"ServiceName", "FunctionName"} else dm.group(1)
        labels.setdefault(key, dm.group(2))
    reason = next((ln for ln in [plain(p.text), *map(plain, p.lines)] if "threshold" in ln.lower()), "")
    a = build_alert("cloudwatch", labels, status="resolved" if state == "OK" else "firing",
               fingerprint=f"{account}:{region}:{name}", url=p.title_link or next(iter(find_urls(blob)), ""),
               severity=p.fields.get("Severity") or "high", annotations={"summary": reason or name})
    return [a] if a else []
