"""Alert intake: the webhook endpoints (Alertmanager, Grafana, generic) in front of triage."""
