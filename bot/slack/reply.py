"""Answering the person who acted: through the interaction's `response_url` when it has one
(works in any channel, even where the bot is not a member), else `chat.postEphemeral`."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import metrics
from bot.slack.blocks import Message

log = logging.getLogger("bot.slack.reply")


KINDS = frozenset(
    {
        "block_actions",
        "block_suggestion",
        "view_submission",
        "view_closed",
        "shortcut",
        "message_action",
        "event_callback",
        "url_verification",
    }
)


def payload_kind(body: dict[str, Any]) -> str:
    """What kind of interaction a payload is (a fixed vocabulary: a metrics label)."""
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if isinstance(kind, str) and kind in KINDS else "other"


def user_of(body: dict[str, Any]) -> str:
    user = body.get("user")
    if isinstance(user, dict):
        return str(user.get("id", ""))
    return str(body.get("user_id", ""))


def channel_of(body: dict[str, Any]) -> str | None:
    if body.get("channel_id"):
        return str(body["channel_id"])
    channel = body.get("channel")
    if isinstance(channel, dict) and channel.get("id"):
        return str(channel["id"])
    container = body.get("container")
    if isinstance(container, dict) and container.get("channel_id"):
        return str(container["channel_id"])
    return None


def response_url_of(body: dict[str, Any]) -> str | None:
    url = body.get("response_url")
    if isinstance(url, str) and url:
        return url
    urls = body.get("response_urls")
    if isinstance(urls, list) and urls and isinstance(urls[0], dict):
        found = urls[0].get("response_url")
        return str(found) if found else None
    return None


async def via_response_url(
    url: str, payload: dict[str, Any], session: aiohttp.ClientSession | None = None
) -> bool:
    """Post to a `response_url`; on `session` (the app's connection pool) when given, which
    spares a new session and TCP connection per reply."""
    webhook = AsyncWebhookClient(url, timeout=10, session=session)
    try:
        result = await webhook.send_dict(payload)
    except Exception as exc:  # aiohttp errors of any kind: fall back to the Web API
        log.warning("response_url post failed: %s", type(exc).__name__)
        metrics.slack_error("response_url", type(exc).__name__)
        return False
    if result.status_code != 200:
        metrics.slack_error("response_url", str(result.body)[:40])
        log.warning("response_url answered %s: %s", result.status_code, str(result.body)[:100])
        return False
    return True


async def ephemeral(
    body: dict[str, Any],
    client: AsyncWebClient,
    message: Message,
    *,
    channel: str | None = None,
    replace_original: bool = False,
) -> None:
    """Show `message` to the person who acted, only to them."""
    url = response_url_of(body)
    if url:
        payload = {
            "response_type": "ephemeral",
            "replace_original": replace_original,
            **message.payload(),
        }
        if await via_response_url(url, payload, client.session):
            return
    user = user_of(body)
    target = channel_of(body) or channel
    if not user:
        return
    try:
        if target:
            await client.chat_postEphemeral(channel=target, user=user, **message.payload())
        else:  # a modal has no channel: the app's DM with the user
            await client.chat_postMessage(channel=user, **message.payload())
    except SlackApiError as exc:
        log.warning("could not answer %s: %s", user, exc.response.get("error"))


async def replace_source(
    body: dict[str, Any], message: Message, client: AsyncWebClient | None = None
) -> bool:
    """Replace the (ephemeral) message whose button was clicked, when Slack allows it."""
    url = response_url_of(body)
    if not url:
        return False
    payload = {"replace_original": True, **message.payload()}
    return await via_response_url(url, payload, client.session if client else None)


async def delete_source(body: dict[str, Any], client: AsyncWebClient | None = None) -> bool:
    url = response_url_of(body)
    if not url:
        return False
    session = client.session if client else None
    return await via_response_url(url, {"delete_original": True}, session)
