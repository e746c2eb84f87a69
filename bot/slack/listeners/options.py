"""Options for the engine picker (an external select when engines come from CSE's list)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.slack.errors import guarded
from bot.slack.ids import Action
from bot.slack.services import Services
from bot.slack.views import engine_option


def register(app: AsyncApp, services: Services) -> None:
    @app.options(Action.ENGINE)
    @guarded
    async def on_engine_options(ack: AsyncAck, payload: dict[str, Any]) -> None:
        engines = await services.catalog.search(str(payload.get("value") or ""))
        await ack(options=[engine_option(e).to_dict() for e in engines])
