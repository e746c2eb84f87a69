"""The global shortcut "Create CSE backup policy": the same form, with a channel picker."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.approval import decide_create
from bot.slack.errors import UserError
from bot.slack.followups import after_ack
from bot.slack.ids import Callback
from bot.slack.services import Services


def register(app: AsyncApp, services: Services) -> None:
    @after_ack(app.shortcut(Callback.SHORTCUT_CREATE))
    async def on_create(body: dict[str, Any], client: AsyncWebClient) -> None:
        user = str(body["user"]["id"])
        # The channel is chosen in the form (and checked on submit); the requester rule now.
        policy = replace(services.flow.policy, allowed_channels=frozenset())
        groups = await services.flow.groups_of(user)
        decision = decide_create(policy, user, groups, "")
        if not decision.allowed:
            raise UserError(decision.message)
        await client.views_open(trigger_id=body["trigger_id"], view=services.form(None))
