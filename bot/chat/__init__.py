"""Chat: the platform-neutral message model, the hub that fans messages out to adapters, and the adapters."""
