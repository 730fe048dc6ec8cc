"""The read-only web view under ``/ui/`` (docs/web.md): server-rendered pages over the store and the audit chain."""
