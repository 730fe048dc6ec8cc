"""Who a clicking Slack user is, for the approver policy: ``slack:<user>`` plus each user group they are in.

Only the user groups that matter are looked up: those named in ``approvals.groups`` and in the
proposal's own approver list. Memberships come from ``usergroups.users.list`` and are cached for
``slack.usergroup_cache_s`` seconds; a lookup that fails grants nothing (and is not cached).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.slack.adapter import SLACK_ERRORS

log = logging.getLogger(__name__)


def slack_groups(identities: Iterable[str]) -> set[str]:
    """The Slack user-group ids (``S…``) among platform-qualified identities."""
    out = set()
    for ident in identities:
        platform, _, rest = ident.partition(":")
        if platform == "slack" and rest.startswith("S"):
            out.add(rest)
    return out


class UserGroupCache:
    def __init__(self, client: AsyncWebClient, ttl_s: float) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self.lookups = 0

    async def members(self, group: str) -> frozenset[str] | None:
        hit = self._members.get(group)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        self.lookups += 1
        try:
            resp = await self.client.usergroups_users_list(usergroup=group)
        except SLACK_ERRORS as exc:
            log.warning("usergroups.users.list %s failed: %s", group, exc)
            return None
        members = frozenset(str(u) for u in resp.get("users") or [])
        if self.ttl_s > 0:
            self._members[group] = (time.monotonic() + self.ttl_s, members)
        return members

    async def principals(self, user_id: str, candidate_identities: Iterable[str]) -> frozenset[str]:
        found = {f"slack:{user_id}"}
        for group in sorted(slack_groups(candidate_identities)):
            members = await self.members(group)
            if members is not None and user_id in members:
                found.add(f"slack:{group}")
        return frozenset(found)
