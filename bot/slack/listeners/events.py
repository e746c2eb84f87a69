"""Events: the App Home tab is rebuilt from the store whenever it is opened."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.approval import decide_approve
from bot.slack.errors import guarded
from bot.slack.home import home_view
from bot.slack.services import Services


def register(app: AsyncApp, services: Services) -> None:
    @app.event("app_home_opened")
    @guarded
    async def on_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user = str(event["user"])
        flow = services.flow
        groups = await flow.groups_of(user)
        now = services.clock()
        pending = await flow.store.list_pending(limit=100)
        waiting = [
            r
            for r in pending
            if r.requester != user and decide_approve(flow.policy, r, user, groups, now).allowed
        ]
        mine = await flow.store.list_user(user, limit=10)
        await client.views_publish(user_id=user, view=home_view(waiting, mine))
