"""The flow's `Announcer` on Slack: posts and updates the messages built in `messages`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.approval import mention
from bot.core.requests import BackupRequest
from bot.flow import PostFailed
from bot.slack.blocks import Message
from bot.slack.messages import (
    Audience,
    approval_message,
    break_glass_message,
    reminder_message,
    result_message,
    status_message,
)

log = logging.getLogger("bot.slack.publisher")


def api_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error", "") or "unknown_error")


def channel_problem(error: str, channel: str) -> str:
    """What a person can do about Slack refusing to post in `channel`."""
    where = mention(channel)
    if error == "not_in_channel":
        return (
            f"I am not a member of {where}: invite me there (`/invite @cse-backup`) and try again."
        )
    if error in {"channel_not_found", "is_archived", "restricted_action"}:
        return (
            f"I cannot post in {where} ({error}): use the command in a channel I am a member "
            "of (invite me with `/invite @cse-backup`)."
        )
    if error == "ratelimited":
        return "Slack is rate limiting me right now; try again in a minute."
    return f"Slack refused my message in {where} ({error}); try again in a minute."


class SlackPublisher:
    def __init__(
        self,
        client: AsyncWebClient,
        audience: Audience,
        clock: Callable[[], datetime],
        on_change: Callable[[BackupRequest], None] | None = None,
    ) -> None:
        self._client = client
        self._audience = audience
        self._clock = clock
        # Told of every request shown anew (posted or updated): the App Home republishes the
        # tabs of the people it concerns.
        self._on_change = on_change

    def _changed(self, request: BackupRequest) -> None:
        if self._on_change is not None:
            self._on_change(request)

    async def _post(self, channel: str, message: Message, **extra: Any) -> str:
        try:
            response = await self._client.chat_postMessage(
                channel=channel,
                unfurl_links=False,
                unfurl_media=False,
                **message.payload(),
                **extra,
            )
        except SlackApiError as exc:
            error = api_error(exc)
            raise PostFailed(channel_problem(error, channel)) from None
        return str(response["ts"])

    async def _update(self, channel: str, ts: str, message: Message) -> None:
        try:
            await self._client.chat_update(channel=channel, ts=ts, **message.payload())
        except SlackApiError as exc:
            error = api_error(exc)
            log.warning("chat.update of %s in %s failed: %s", ts, channel, error)

    async def post_approval(self, request: BackupRequest, channel: str) -> str:
        message = approval_message(request, audience=self._audience, now=self._clock())
        ts = await self._post(channel, message)
        self._changed(request)
        return ts

    async def post_status(self, request: BackupRequest, channel: str) -> str:
        return await self._post(channel, status_message(request))

    async def refresh(self, request: BackupRequest) -> None:
        """Rebuild the approval message (and the status message) from the stored request."""
        self._changed(request)
        if request.message_channel and request.message_ts:
            message = approval_message(request, audience=self._audience, now=self._clock())
            await self._update(request.message_channel, request.message_ts, message)
        if request.status_channel and request.status_ts:
            await self._update(request.status_channel, request.status_ts, status_message(request))

    async def post_result(self, request: BackupRequest) -> None:
        message = result_message(request)
        if message is None:
            return
        try:
            await self._post(request.channel, message)
        except PostFailed as exc:
            # The requester's channel refused; the approval message still shows the outcome.
            log.warning("result of %s not posted in %s: %s", request.id, request.channel, exc)
            if request.message_channel and request.message_channel != request.channel:
                await self._post(request.message_channel, message, thread_ts=request.message_ts)

    async def announce_break_glass(self, request: BackupRequest, user: str, reason: str) -> None:
        message = break_glass_message(request, user, reason)
        channels = {request.message_channel or request.channel, request.channel}
        for channel in sorted(channels):
            try:
                await self._post(channel, message)
            except PostFailed as exc:
                log.warning("break-glass announcement not posted in %s: %s", channel, exc)

    async def remind(self, request: BackupRequest) -> None:
        if not (request.message_channel and request.message_ts):
            return
        message = reminder_message(request, self._audience)
        await self._post(
            request.message_channel, message, thread_ts=request.message_ts, reply_broadcast=False
        )
