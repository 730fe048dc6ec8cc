"""Connectors to the outside world, each behind a small typed interface (see ``integrations.base``)."""
