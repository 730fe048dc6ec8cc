"""Slack: a slack-bolt AsyncApp (HTTP or Socket Mode) and the adapter that renders incidents in threads."""
