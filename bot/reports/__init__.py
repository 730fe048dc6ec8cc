"""Read views over onwatch's own records: an incident's timeline and the reliability reports (docs/reports.md)."""
