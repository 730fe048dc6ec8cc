"""The platform-neutral message model: what the domain says in an incident's thread, before any chat platform.

``model`` holds the thread's values (card, messages, blocks, actions); ``format`` shows numbers, times and
phases the same way in every renderer. Both depend on nothing but the standard library, so the domain can
write messages without importing chat, and each adapter in ``bot.chat`` renders them.
"""
