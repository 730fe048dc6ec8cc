"""Triage: normalised alerts, fingerprints, dedup, suppression, grouping into incidents, severity, noise."""
