"""Events: the App Home tab is rebuilt from the store whenever it is opened."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.followups import after_ack
from bot.slack.services import Services


def register(app: AsyncApp, services: Services) -> None:
    @after_ack(app.event("app_home_opened"))
    async def on_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        await services.home.opened(str(event["user"]))
