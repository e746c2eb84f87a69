"""Bolt listeners, one module per interaction kind, each with `register(app, services)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, events, options, shortcuts, views
from bot.slack.services import Services


def register_listeners(app: AsyncApp, services: Services) -> None:
    """Bolt tries listeners in the order they were registered, a few microseconds each, until
    one matches: the ones people wait on come first (commands, the approval buttons, modal
    submissions), the form's inputs and the rest after."""
    commands.register(app, services)
    actions.register_approval_buttons(app, services)
    for module in (views, actions, shortcuts, options, events):
        module.register(app, services)
