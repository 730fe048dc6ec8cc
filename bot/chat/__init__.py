"""Chat: the hub that fans the domain's messages (``bot.messages``) out to the adapters, and the adapters."""
