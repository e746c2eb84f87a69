"""Typed errors for the Slack surface, and the one global error handler.

Handlers raise; they never format failures themselves. The handler below turns:
- a `FieldErrors` raised by a view submission into `response_action: errors`;
- any other known error (`UserError`, the flow's `FlowError`, the store being down, Slack
  refusing a call) into an ephemeral message to the person who acted (or a small modal when a
  view submission has not been answered yet);
- anything else into "Something went wrong, reference <id>", with that id in the log line.
"""

from __future__ import annotations

import inspect
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.flow import FlowError
from bot.slack.blocks import Message
from bot.slack.messages import text_message
from bot.slack.publisher import api_error
from bot.slack.reply import ephemeral, payload_kind
from bot.slack.views import notice_view
from bot.store import StoreUnavailable

log = logging.getLogger("bot.slack.errors")

STORE_DOWN = "The request store is not answering; nothing was saved. Try again in a minute."


class UserError(Exception):
    """Something the person must hear; str(e) is ready-to-show mrkdwn (already escaped)."""


class FieldErrors(UserError):
    """A view submission with bad values: one message per input block id."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def slack_problem(exc: SlackApiError) -> str:
    error = api_error(exc)
    if error in {"expired_trigger_id", "trigger_exchanged"}:
        return (
            "Slack closed the window for opening the form (it allows 3 seconds). Please try again."
        )
    if error == "ratelimited":
        return "Slack is rate limiting me right now; try again in a minute."
    return f"Slack refused a call ({error}); try again in a minute."


def known_message(error: Exception) -> str | None:
    """The text to show for a known error, None for an unexpected one."""
    if isinstance(error, UserError | FlowError):
        return str(error)
    if isinstance(error, StoreUnavailable):
        metrics.REDIS_ERRORS.inc()
        return STORE_DOWN
    if isinstance(error, SlackApiError):  # already counted by metrics.SlackApiErrors
        return slack_problem(error)
    return None


def _json(body: dict[str, Any]) -> BoltResponse:
    return BoltResponse(
        status=200, body=json.dumps(body), headers={"content-type": "application/json"}
    )


async def handle_error(
    error: Exception,
    body: dict[str, Any],
    response: BoltResponse | None,
    client: AsyncWebClient,
    context: Mapping[str, Any] | None = None,
) -> BoltResponse | None:
    kind = payload_kind(body)
    message = known_message(error)
    if message is None:
        reference = secrets.token_hex(4)
        metrics.UNHANDLED.inc()
        metrics.INTERACTIONS.labels(kind, "error").inc()
        log.error(
            "unhandled error in a %s handler, reference %s",
            kind,
            reference,
            exc_info=error,
            extra={"reference": reference, "kind": kind, "user": _user(body)},
        )
        message = (
            f"Something went wrong, reference `{reference}`. Nothing more was done; "
            "try again, and give the bot's operators this reference if it happens again."
        )
    else:
        metrics.INTERACTIONS.labels(kind, "refused").inc()
        log.info(
            "%s refused: %s",
            kind,
            type(error).__name__,
            extra={"kind": kind, "user": _user(body), "outcome": type(error).__name__},
        )

    if response is not None:  # not acknowledged yet: the answer can go into the ack itself
        if kind == "view_submission":
            if isinstance(error, FieldErrors):
                return _json({"response_action": "errors", "errors": error.errors})
            return _json({"response_action": "push", "view": notice_view("Not done", message)})
        if kind == "command":
            return _json({"response_type": "ephemeral", "text": message})
        if kind == "block_suggestion":
            return _json({"options": []})
        await _tell(body, client, error, message, context)
        return BoltResponse(status=200, body="")
    await _tell(body, client, error, message, context)
    return None


class HomeNotices(Protocol):
    async def publish(self, user: str, notice: str | None = None) -> None: ...


def from_home(body: dict[str, Any]) -> bool:
    """The interaction came from the App Home tab (which has no channel to answer in)."""
    view = body.get("view")
    return isinstance(view, dict) and view.get("type") == "home"


async def _tell(
    body: dict[str, Any],
    client: AsyncWebClient,
    error: Exception,
    text: str,
    context: Mapping[str, Any] | None = None,
) -> None:
    channel = getattr(error, "channel", None)
    home: HomeNotices | None = (context or {}).get("home")
    if home is not None and from_home(body):
        # Answered in the tab itself, rebuilt from the store: the viewer sees why, and what is
        # true now. (The store may be what failed: then an ephemeral, as elsewhere.)
        try:
            await home.publish(_user(body), notice=f":warning: {text}")
            return
        except Exception as exc:
            log.warning("could not answer in the Home tab: %s", type(exc).__name__)
    try:
        await ephemeral(body, client, text_message(text), channel=channel)
    except Exception:
        log.exception("could not tell the user about an error")


def _user(body: dict[str, Any]) -> str:
    user = body.get("user")
    if isinstance(user, dict):
        return str(user.get("id", ""))
    return str(body.get("user_id", ""))


def register(app: AsyncApp) -> None:
    app.error(handle_error)


Listener = Callable[..., Awaitable[None]]


def guarded(func: Listener) -> Listener:
    """Route errors raised after `ack()` to `handle_error` here, not through Bolt.

    Bolt (1.x, HTTP mode) resets the acknowledgement when a listener raises after `ack()`; if that
    happens before Bolt has sent the ack, Slack gets a 404 instead. Errors before `ack()` still go
    through Bolt's error path, which puts the answer into the ack itself (modal errors, say).
    """
    wanted = list(inspect.signature(func).parameters)
    names = list(dict.fromkeys([*wanted, "ack", "body", "client", "context"]))

    async def listener(**kwargs: Any) -> None:
        try:
            await func(**{name: kwargs[name] for name in wanted})
        except Exception as error:
            ack = kwargs["ack"]
            if ack.response is None:
                raise
            await handle_error(error, kwargs["body"], None, kwargs["client"], kwargs["context"])

    listener.__name__ = func.__name__
    listener.__qualname__ = func.__qualname__
    listener.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    )
    return listener


__all__ = ["STORE_DOWN", "FieldErrors", "Message", "UserError", "guarded", "register"]
