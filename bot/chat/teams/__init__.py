"""Microsoft Teams adapter (botbuilder). Every botbuilder import in onwatch lives in this package.

``cards`` renders the neutral ``bot.messages.model`` as Adaptive Cards 1.5; ``bot`` handles inbound activities
(commands, installs, Action.Execute invokes); ``adapter`` sends proactive posts and card updates;
``routes`` mounts ``POST /api/messages``. Replacing botbuilder (e.g. by the Microsoft 365 Agents SDK)
touches only this package.
"""
