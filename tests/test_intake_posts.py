"""The alert-post parser on real-shaped Slack payloads of each tool; anything else is ignored."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.intake.posts import ChatPost, parse_alert_post


def post(text: str = "", attachments=None, blocks=None, username: str = "") -> ChatPost:
    return ChatPost(platform="slack", channel="C1", ts="1714557600.000100", user="", bot_id="B1",
                    username=username, text=text, attachments=attachments or [], blocks=blocks or [])


def test_alertmanager_default_template_title_only():
    p = post(attachments=[{
        "color": "danger", "title": "[FIRING:2] HighLatency checkout (prod shop)",
        "title_link": "http://alertmanager:9093/#/alerts?receiver=slack",
        "fallback": "[FIRING:2] HighLatency checkout (prod shop) | http://alertmanager:9093/#/alerts?receiver=slack",
        "text": "", "footer": "", "mrkdwn_in": ["fallback", "pretext", "text"],
    }])
    [a] = parse_alert_post(p)
    assert a.source == "alertmanager" and a.name == "HighLatency" and a.service == "checkout"
    assert a.status == "firing" and a.annotations["common_labels"] == "prod shop"


def test_alertmanager_text_template_per_alert():
    text = (
        "*Alert:* Checkout p99 latency above 2s - `critical`\n*Description:* p99 is 3.4s\n*Details:*\n"
        "  • *alertname:* `HighLatency`\n  • *service:* `checkout`\n  • *namespace:* `shop`\n"
        "*Alert:* Payments errors - `warning`\n*Description:* 5xx at 4%\n*Details:*\n"
        "  • *alertname:* `HighErrorRate`\n  • *service:* `payments`\n"
    )
    p = post(attachments=[{"color": "good", "title": "[RESOLVED] HighLatency", "text": text,
                           "title_link": "http://am/#/alerts"}])
    a, b = parse_alert_post(p)
    assert (a.name, a.service, a.severity, a.status) == ("HighLatency", "checkout", "critical", "resolved")
    assert a.annotations["description"] == "p99 is 3.4s" and a.labels["namespace"] == "shop"
    assert (b.name, b.service, b.severity) == ("HighErrorRate", "payments", "warning")


def test_grafana_slack_contact_point():
    text = (
        "**Firing**\n\nValue: B=0.93\nLabels:\n - alertname = CPUHigh\n - grafana_folder = Infra\n"
        " - service = payments\n - severity = critical\nAnnotations:\n - summary = CPU above 90%\n"
        "Source: http://grafana:3000/alerting/grafana/abc/view?orgId=1\n"
        "Silence: http://grafana:3000/alerting/silence/new?alertmanager=grafana\n\n"
        "Value: B=0.91\nLabels:\n - alertname = CPUHigh\n - service = ledger\nAnnotations:\n - summary = CPU\n"
        "Source: http://grafana:3000/alerting/grafana/def/view?orgId=1\n\n"
        "**Resolved**\n\nValue: B=0.2\nLabels:\n - alertname = MemHigh\n - service = search\n"
    )
    p = post(attachments=[{"color": "#D63232", "title": "[FIRING:2, RESOLVED:1] CPUHigh (Infra)"
                           .replace(", RESOLVED:1", ""), "title_link": "http://grafana:3000/alerting/list",
                           "text": text, "footer": "Grafana v10.4.2", "footer_icon": "https://grafana.com/x.png"}])
    alerts = parse_alert_post(p)
    assert [(a.source, a.name, a.service, a.status) for a in alerts] == [
        ("grafana", "CPUHigh", "payments", "firing"), ("grafana", "CPUHigh", "ledger", "firing"),
        ("grafana", "MemHigh", "search", "resolved")]
    assert alerts[0].severity == "critical" and alerts[0].annotations["summary"] == "CPU above 90%"
    assert alerts[0].generator_url.startswith("http://grafana:3000/alerting/grafana/abc")


def test_datadog_monitor_triggered_and_recovered():
    att = {
        "color": "#d10b3c", "fallback": "Triggered: [P1] High error rate on checkout",
        "title": "[Triggered on {service:checkout,env:prod}] [P1] High error rate on checkout",
        "title_link": "https://app.datadoghq.com/monitors/123456?group=service%3Acheckout&from_ts=1714557000",
        "text": "Error rate above 5% for 5 minutes @slack-oncall\n\nservice:checkout env:prod team:payments",
        "footer": "Datadog",
    }
    [a] = parse_alert_post(post(attachments=[att]))
    assert (a.source, a.name, a.service, a.severity, a.status) == (
        "datadog", "High error rate on checkout", "checkout", "critical", "firing")
    assert a.fingerprint == "monitor-123456-service:checkout,env:prod" and a.labels["team"] == "payments"
    rec = dict(att, title=att["title"].replace("Triggered", "Recovered"))
    [r] = parse_alert_post(post(attachments=[rec]))
    assert r.status == "resolved" and r.fingerprint == a.fingerprint


def test_pagerduty_blocks():
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "*<https://acme.pagerduty.com/incidents/Q2ZN5O8UYFHVXO|[#1234] Checkout API 5xx above SLO>*"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*Status:*\nTriggered"},
            {"type": "mrkdwn", "text": "*Urgency:*\nHigh"},
            {"type": "mrkdwn", "text": "*Service:*\n<https://acme.pagerduty.com/service-directory/PX1|checkout-api>"},
            {"type": "mrkdwn", "text": "*Assigned:*\n<https://acme.pagerduty.com/users/U1|Jane Doe>"},
        ]},
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"}}]},
    ]
    [a] = parse_alert_post(post(attachments=[{"color": "#D01E13", "blocks": blocks}]))
    assert (a.source, a.name, a.service, a.severity, a.status) == (
        "pagerduty", "Checkout API 5xx above SLO", "checkout-api", "critical", "firing")
    assert a.fingerprint == "Q2ZN5O8UYFHVXO"
    blocks[1]["fields"][0]["text"] = "*Status:*\nResolved"  # type: ignore[index]
    [r] = parse_alert_post(post(attachments=[{"color": "#2C9A5C", "blocks": blocks}]))
    assert r.status == "resolved"


def test_opsgenie_attachment():
    att = {
        "color": "#EE2D2D", "pretext": "New alert created via API",
        "title": "#5678: Kafka consumer lag on billing",
        "title_link": "https://acme.app.opsgenie.com/alert/detail/6f1e2b3c-4d5e-6f70-8192-a3b4c5d6e7f8-1714557600/details",
        "text": "Consumer group billing-worker lag above 100k",
        "fields": [{"title": "Priority", "value": "P2", "short": True},
                   {"title": "Tags", "value": "service:billing, env:prod", "short": True},
                   {"title": "Source", "value": "Prometheus", "short": True}],
        "footer": "Opsgenie",
    }
    [a] = parse_alert_post(post(attachments=[att]))
    assert (a.source, a.name, a.service, a.severity, a.status) == (
        "opsgenie", "Kafka consumer lag on billing", "billing", "high", "firing")
    closed = dict(att, pretext="Alert closed by Jane Doe", color="#2EB886")
    [c] = parse_alert_post(post(attachments=[closed]))
    assert c.status == "resolved" and c.fingerprint == a.fingerprint


def test_sentry_blocks_and_legacy_attachment():
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": ":red_circle: <https://acme.sentry.io/issues/4509123/?referrer=slack&alert_rule_id=9|*TypeError: Cannot read properties of undefined*>"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "```checkout/views.py in submit```"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "State: *New*   First Seen: *2 minutes ago*"}]},
        {"type": "context", "elements": [{"type": "mrkdwn",
                                          "text": "Project: <https://acme.sentry.io/projects/checkout-web/|checkout-web>    Alert: High volume    Short ID: CHECKOUT-WEB-1A3"}]},
    ]
    [a] = parse_alert_post(post(blocks=blocks, text="TypeError: Cannot read properties of undefined"))
    assert (a.source, a.name, a.service, a.status, a.fingerprint) == (
        "sentry", "TypeError: Cannot read properties of undefined", "checkout-web", "firing", "4509123")
    legacy = {"title": "ZeroDivisionError: division by zero",
              "title_link": "https://sentry.io/organizations/acme/issues/777/?referrer=slack",
              "text": "ledger.compute in rate", "footer": "LEDGER-API-4F via Alert rule: errors", "color": "#E03E2F"}
    [b] = parse_alert_post(post(attachments=[legacy]))
    assert (b.service, b.fingerprint) == ("ledger-api", "777")


def test_aws_chatbot_cloudwatch_alarm():
    att = {
        "color": "#d13212",
        "fallback": "CloudWatch Alarm | HighCPU-checkout | us-east-1 | Account: 123456789012",
        "title": ":rotating_light: CloudWatch Alarm | HighCPU-checkout | us-east-1 | Account: 123456789012",
        "title_link": "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarm:alarmFilter=ANY;name=HighCPU-checkout",
        "text": "Threshold Crossed: 1 datapoint [92.3 (01/05/24 10:00:00)] was greater than or equal to the threshold (80.0).",
        "fields": [{"title": "Alarm Name", "value": "HighCPU-checkout", "short": True},
                   {"title": "State", "value": "ALARM", "short": True},
                   {"title": "Dimensions", "value": "ClusterName = prod, ServiceName = checkout", "short": False}],
    }
    [a] = parse_alert_post(post(attachments=[att]))
    assert (a.source, a.name, a.service, a.status) == ("cloudwatch", "HighCPU-checkout", "checkout", "firing")
    assert a.fingerprint == "123456789012:us-east-1:HighCPU-checkout" and a.labels["region"] == "us-east-1"
    assert "Threshold Crossed" in a.annotations["summary"]
    ok = dict(att, title=str(att["title"]).replace(":rotating_light:", ":white_check_mark:"),
              fields=[{"title": "State", "value": "OK"}])
    [r] = parse_alert_post(post(attachments=[ok]))
    assert r.status == "resolved" and r.fingerprint == a.fingerprint


def test_ordinary_messages_are_ignored():
    for p in [
        post("deploying checkout v1.2.3 now"),
        post("is anyone looking at the FIRING thing?"),
        post("see https://acme.sentry.io/settings/ for config"),
        post(attachments=[{"title": "Release notes", "text": "v2 is out", "footer": "GitHub"}]),
        post(blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "lunch?"}}]),
        post(attachments=[{"title": 5, "fields": "nope", "blocks": [None, 3]}], blocks=[{"text": {"text": None}}]),
    ]:
        assert parse_alert_post(p) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), attachments=st.lists(st.dictionaries(
    st.sampled_from(["title", "text", "title_link", "fields", "footer", "pretext", "blocks", "color"]),
    json_values, max_size=6), max_size=3), blocks=st.lists(json_values, max_size=3))
def test_parser_never_raises_on_hostile_posts(text, attachments, blocks):
    out = parse_alert_post(ChatPost("slack", "C", "1", text=text, attachments=attachments,
                                    blocks=[b for b in blocks if isinstance(b, dict)]))
    assert isinstance(out, list)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_alert_titles_with_hostile_text(tail):
    out = parse_alert_post(post(attachments=[{"title": f"[FIRING:1] {tail}", "text": tail}]))
    assert all(a.status == "firing" for a in out)
