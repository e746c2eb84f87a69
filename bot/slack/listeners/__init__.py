"""Bolt listeners, one module per interaction kind, each with `register(app, services)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, events, options, shortcuts, views
from bot.slack.services import Services


def register_listeners(app: AsyncApp, services: Services) -> None:
    for module in (commands, shortcuts, views, actions, options, events):
        module.register(app, services)
