"""What the bot asks Slack about people: their time zone, their user groups (cached briefly)."""

from __future__ import annotations

import asyncio
import logging
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("bot.slack.directory")

USER_TTL = 600.0
GROUP_TTL = 60.0
# Slack answers in milliseconds; never let a slow answer eat the 3 s a view submission has.
CALL_TIMEOUT = 1.5


class SlackDirectory:
    def __init__(
        self,
        client: AsyncWebClient,
        groups: frozenset[str] = frozenset(),
        *,
        user_ttl: float = USER_TTL,
        group_ttl: float = GROUP_TTL,
    ) -> None:
        self._client = client
        self._groups = groups
        self._user_ttl = user_ttl
        self._group_ttl = group_ttl
        self._zones: dict[str, tuple[float, ZoneInfo | None]] = {}
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def user_zone(self, user: str) -> ZoneInfo | None:
        """The user's own Slack time zone (`users.info` tz), or None when it cannot be had."""
        cached = self._zones.get(user)
        if cached and time.monotonic() - cached[0] < self._user_ttl:
            return cached[1]
        zone: ZoneInfo | None = None
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                response = await self._client.users_info(user=user)
            name = (response.get("user") or {}).get("tz")
            if isinstance(name, str) and name:
                zone = ZoneInfo(name)
        except SlackApiError as exc:
            log.warning("users.info for %s failed: %s", user, exc.response.get("error"))
        except (TimeoutError, ZoneInfoNotFoundError, ValueError, OSError) as exc:
            log.warning("time zone of %s unknown: %s", user, type(exc).__name__)
        self._zones[user] = (time.monotonic(), zone)
        return zone

    async def groups_of(self, user: str) -> frozenset[str]:
        """Which of the configured user groups (APPROVERS / REQUESTERS) `user` belongs to."""
        if not self._groups:
            return frozenset()
        found = await asyncio.gather(*(self._group_members(g) for g in sorted(self._groups)))
        return frozenset(
            g for g, members in zip(sorted(self._groups), found, strict=True) if user in members
        )

    async def _group_members(self, group: str) -> frozenset[str]:
        cached = self._members.get(group)
        if cached and time.monotonic() - cached[0] < self._group_ttl:
            return cached[1]
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                response = await self._client.usergroups_users_list(usergroup=group)
            members = frozenset(str(u) for u in response.get("users") or [])
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            log.warning("members of %s unknown (%s): nobody counts as a member", group, error)
            if cached:
                return cached[1]
            return frozenset()
        except (TimeoutError, OSError) as exc:
            log.warning("members of %s unknown (%s)", group, type(exc).__name__)
            return cached[1] if cached else frozenset()
        self._members[group] = (time.monotonic(), members)
        return members
