"""Drives the app over HTTP the way Slack does.

`SlackDriver` sends signed requests (`X-Slack-Signature` v0, `X-Slack-Request-Timestamp`) to the
app's `POST /slack/events` with bodies shaped like Slack's real payloads: slash commands and
interactivity form-encoded, events as JSON. Every interaction gets a fresh `trigger_id` and, where
Slack gives one, a `response_url`, both registered with the `FakeSlack` so the app's
`views.open` / `respond(...)` calls land there and are checked.

The driver also plays the Slack client's part: a slash command's acknowledgement body is shown
to the user as an ephemeral, a `view_submission` response (`update`, `push`, `clear`, `errors`,
or an empty ack that closes the modal) is applied to the user's open modals, and a required
input left empty is refused before anything is sent (Slack's client never submits it).

Typical use (the app served in HTTP mode, `SLACK_API_URL=fake.url`):

    async with SlackDriver(app_url, signing_secret, fake) as slack:
        await slack.command("U1", "C1", "create")
        form = await slack.wait_for_view("U1")
        reply = await slack.submit_view("U1", form, {"Engine": "prod", "Schedule": "0 2 * * *"})
        assert reply.json()["response_action"] == "update"
        await slack.submit_view("U1", slack.current_view("U1"))  # the confirmation view
        await slack.wait_for_message("Approve", channel="C1")
        await slack.click("U2", "Approve")
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from tests.fakes.slack_api import (
    JSON,
    Ephemeral,
    FakeSlack,
    Message,
    find_button,
    iter_blocks,
    text_of,
)

__all__ = ["ClientRefused", "NotAcknowledged", "SlackDriver", "state_values", "text_of"]

USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

# Element type -> (key in view.state.values, key of its initial value in the view).
_STATE_KEYS: dict[str, tuple[str, str]] = {
    "plain_text_input": ("value", "initial_value"),
    "email_text_input": ("value", "initial_value"),
    "url_text_input": ("value", "initial_value"),
    "number_input": ("value", "initial_value"),
    "rich_text_input": ("rich_text_value", "initial_value"),
    "static_select": ("selected_option", "initial_option"),
    "external_select": ("selected_option", "initial_option"),
    "radio_buttons": ("selected_option", "initial_option"),
    "multi_static_select": ("selected_options", "initial_options"),
    "multi_external_select": ("selected_options", "initial_options"),
    "checkboxes": ("selected_options", "initial_options"),
    "users_select": ("selected_user", "initial_user"),
    "multi_users_select": ("selected_users", "initial_users"),
    "conversations_select": ("selected_conversation", "initial_conversation"),
    "multi_conversations_select": ("selected_conversations", "initial_conversations"),
    "channels_select": ("selected_channel", "initial_channel"),
    "multi_channels_select": ("selected_channels", "initial_channels"),
    "datepicker": ("selected_date", "initial_date"),
    "timepicker": ("selected_time", "initial_time"),
    "datetimepicker": ("selected_date_time", "initial_date_time"),
}
_LIST_STATES = {
    "selected_options",
    "selected_users",
    "selected_conversations",
    "selected_channels",
}


class NotAcknowledged(AssertionError):
    """The app did not answer a Slack request with HTTP 200 (Slack would show the user an
    error, or redeliver an event). Carries the response."""

    def __init__(self, kind: str, response: httpx.Response) -> None:
        super().__init__(
            f"the app answered HTTP {response.status_code} to a {kind} request"
            f" ({response.text[:200]!r}); Slack would show the user an error"
        )
        self.response = response


class ClientRefused(AssertionError):
    """Slack's client would not send this (a required input is empty, a value is too long,
    an option does not exist, the view is not open)."""


# ---------------------------------------------------------------------------------------------
# view.state.values, as Slack builds it
# ---------------------------------------------------------------------------------------------


def state_values(
    blocks: Sequence[JSON], values: Mapping[str, Any] | None = None, *, enforce: bool = True
) -> JSON:
    """Build `state.values` ({block_id: {action_id: {...}}}) for these blocks.

    `values` maps an input's label (exact, else contained; case-insensitive), block_id or
    action_id to what the user enters: a string for text and number inputs, an option's value
    or visible text (or a full option dict, for external selects) for selects and radio
    buttons, a list of those for checkboxes and multi-selects, "HH:MM" for a timepicker.
    Inputs not mentioned keep their initial value, as in Slack. With `enforce`, what Slack's
    client refuses (required input empty, text over max_length, unknown option) raises
    ClientRefused.
    """
    stateful = [
        (block, element) for block, element in iter_blocks(blocks) if element["type"] in _STATE_KEYS
    ]
    chosen: dict[int, Any] = {}
    for key, value in (values or {}).items():
        chosen[_match_input(stateful, key)] = value

    state: JSON = {}
    for index, (block, element) in enumerate(stateful):
        kind = element["type"]
        state_key, initial_key = _STATE_KEYS[kind]
        if index in chosen:
            current = _user_value(element, state_key, chosen[index])
        elif initial_key in element:
            current = element[initial_key]
        elif block.get("type") == "input":
            current = [] if state_key in _LIST_STATES else None
        else:
            continue  # untouched elements outside input blocks carry no state
        if enforce and block.get("type") == "input":
            _client_checks(block, element, current)
        entry: JSON = {"type": kind, state_key: current}
        if kind == "timepicker" and "timezone" in element:
            entry["timezone"] = element["timezone"]
        state.setdefault(block["block_id"], {})[element["action_id"]] = entry
    return state


def _label(block: JSON) -> str:
    return text_of(block.get("label")) if block.get("type") == "input" else ""


def _match_input(stateful: list[tuple[JSON, JSON]], key: str) -> int:
    wanted = _norm(key)
    by_id = [
        i for i, (b, e) in enumerate(stateful) if key in (b.get("block_id"), e.get("action_id"))
    ]
    exact = [i for i, (b, _) in enumerate(stateful) if _norm(_label(b)) == wanted]
    partial = [i for i, (b, _) in enumerate(stateful) if wanted and wanted in _norm(_label(b))]
    for candidates in (by_id, exact, partial):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            labels = [_label(stateful[i][0]) or stateful[i][0]["block_id"] for i in candidates]
            raise ValueError(f"input {key!r} is ambiguous: {labels}")
    labels = [_label(b) or f"{b['block_id']}/{e['action_id']}" for b, e in stateful]
    raise KeyError(f"no input matches {key!r}; inputs are {labels}")


def _user_value(element: JSON, state_key: str, value: Any) -> Any:
    if state_key == "selected_option":
        return None if value is None else _option(element, value)
    if state_key == "selected_options":
        items = [value] if isinstance(value, str | dict) else list(value)
        return [_option(element, item) for item in items]
    if state_key in _LIST_STATES:
        return [value] if isinstance(value, str) else list(value)
    if state_key == "selected_date_time":
        return int(value)
    if state_key == "rich_text_value":
        return {
            "type": "rich_text",
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": str(value)}]}
            ],
        }
    if value is None or value == "":
        return None
    return str(value)


def _option(element: JSON, value: Any) -> JSON:
    """The option the user picks, by value or visible text, as Slack sends it back."""
    options = list(element.get("options", []))
    for group in element.get("option_groups", []):
        options += group.get("options", [])
    if isinstance(value, dict):
        return value
    if not options:  # an external select: options came from the app at typing time
        return {"text": {"type": "plain_text", "text": str(value), "emoji": True}, "value": value}
    for option in options:
        if option.get("value") == value:
            return dict(option)
    for option in options:
        if _norm(text_of(option.get("text"))) == _norm(str(value)):
            return dict(option)
    shown = [(text_of(o.get("text")), o.get("value")) for o in options]
    raise ClientRefused(f"no option {value!r} in {element.get('action_id')}; options: {shown}")


def _client_checks(block: JSON, element: JSON, current: Any) -> None:
    label = _label(block)
    if not block.get("optional", False) and current in (None, "", []):
        raise ClientRefused(f"Slack's client does not submit: required input {label!r} is empty")
    if element["type"] == "plain_text_input" and isinstance(current, str):
        if "max_length" in element and len(current) > element["max_length"]:
            raise ClientRefused(f"{label!r} is longer than max_length {element['max_length']}")
        if "min_length" in element and len(current) < element["min_length"]:
            raise ClientRefused(f"{label!r} is shorter than min_length {element['min_length']}")
    if element["type"] == "number_input" and isinstance(current, str):
        try:
            number = float(current)
        except ValueError:
            raise ClientRefused(f"{label!r} accepts numbers only, not {current!r}") from None
        if not element.get("is_decimal_allowed") and not number.is_integer():
            raise ClientRefused(f"{label!r} accepts whole numbers only, not {current!r}")
        low, high = element.get("min_value"), element.get("max_value")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise ClientRefused(f"{label!r}: {current} is outside {low}..{high}")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


class SlackDriver:
    """Sends what Slack would send to the app at `app_url` (its base URL or `/slack/events`)."""

    def __init__(
        self,
        app_url: str,
        signing_secret: str,
        fake: FakeSlack,
        *,
        verification_token: str = "legacy-verification-token",
        timeout: float = 30.0,
        strict: bool = True,
        socket_mode: bool = False,
    ) -> None:
        app_url = app_url.rstrip("/")
        self.events_url = (
            app_url if app_url.endswith("/slack/events") else f"{app_url}/slack/events"
        )
        self._secret = signing_secret.encode()
        self.fake = fake
        self.verification_token = verification_token
        # Raise NotAcknowledged when the app answers a signed request with anything but 200.
        self.strict = strict
        # Deliver through the fake's Socket Mode connections instead of HTTP.
        self.socket_mode = socket_mode
        self.http = httpx.AsyncClient(timeout=timeout)
        # The fake's call count when the driver last sent something: the waits below look
        # only at what the app did after that.
        self.mark = 0

    @classmethod
    def over_socket(cls, fake: FakeSlack, **options: Any) -> SlackDriver:
        """A driver for an app in Socket Mode, connected to `fake` with its app token."""
        return cls("", "", fake, socket_mode=True, **options)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> SlackDriver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- transport ------------------------------------------------------------------------------

    def sign(self, body: str | bytes, timestamp: int | None = None) -> dict[str, str]:
        """Slack's signing headers for `body` (v0 HMAC-SHA256 over `v0:{timestamp}:{body}`)."""
        raw = body.encode() if isinstance(body, str) else body
        ts = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(self._secret, b"v0:" + ts.encode() + b":" + raw, hashlib.sha256)
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest.hexdigest()}"}

    async def raw(
        self, body: str | bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST `body` with exactly `headers` (nothing signed): for forged or broken requests."""
        self.mark = self.fake.mark()
        return await self.http.post(self.events_url, content=body, headers=dict(headers or {}))

    async def _send(
        self,
        kind: str,
        envelope_type: Literal["slash_commands", "interactive", "events_api"],
        payload: JSON,
        http_body: str,
        content_type: str,
        retry_num: int | None = None,
    ) -> httpx.Response:
        """Deliver one request over the app's transport; the answer as an HTTP response."""
        self.mark = self.fake.mark()
        if self.socket_mode:
            ack = await self.fake.deliver_socket(
                envelope_type,
                payload,
                retry_attempt=retry_num or 0,
                retry_reason="timeout" if retry_num else "",
            )
            response = _socket_answer(ack)
        else:
            headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
            headers |= self.sign(http_body)
            if retry_num is not None:
                headers["X-Slack-Retry-Num"] = str(retry_num)
                headers["X-Slack-Retry-Reason"] = "http_timeout"
            response = await self.http.post(self.events_url, content=http_body, headers=headers)
        if self.strict and response.status_code != 200:
            raise NotAcknowledged(kind, response)
        return response

    async def send_command(self, fields: Mapping[str, str]) -> httpx.Response:
        """A slash command: form-encoded fields (or their dict, in a Socket Mode envelope)."""
        kind = f"{fields.get('command')} command"
        form = "application/x-www-form-urlencoded"
        return await self._send(kind, "slash_commands", dict(fields), urlencode(fields), form)

    async def send_interaction(self, payload: JSON) -> httpx.Response:
        """An interactivity request: form-encoded `payload=<json>` (or the payload itself)."""
        body = urlencode({"payload": json.dumps(payload)})
        form = "application/x-www-form-urlencoded"
        return await self._send(str(payload["type"]), "interactive", payload, body, form)

    async def send_event(self, envelope: JSON, retry_num: int | None = None) -> httpx.Response:
        """An Events API request: the JSON envelope."""
        kind = str(envelope.get("event", {}).get("type") or envelope.get("type"))
        return await self._send(
            kind, "events_api", envelope, json.dumps(envelope), "application/json", retry_num
        )

    # -- common payload parts -------------------------------------------------------------------

    def user_obj(self, user: str) -> JSON:
        name = self.fake.user_name(user)
        return {"id": user, "username": name, "name": name, "team_id": self.fake.team_id}

    def _team(self) -> JSON:
        return {"id": self.fake.team_id, "domain": self.fake.team_domain}

    def _base(self, kind: str, user: str) -> JSON:
        return {
            "type": kind,
            "user": self.user_obj(user),
            "api_app_id": self.fake.app_id,
            "token": self.verification_token,
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _channel_obj(self, channel: str) -> JSON:
        return {"id": channel, "name": channel.lower()}

    # -- slash commands -------------------------------------------------------------------------

    async def command(
        self, user: str, channel: str, text: str = "", command: str = "/cse-backup"
    ) -> httpx.Response:
        """Run a slash command. A non-empty acknowledgement is shown to the user, as in Slack
        (an ephemeral, or a channel message for `response_type: in_channel`)."""
        response_url = self.fake.issue_response_url(user, channel)
        fields = {
            "token": self.verification_token,
            "team_id": self.fake.team_id,
            "team_domain": self.fake.team_domain,
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": self.fake.user_name(user),
            "command": command,
            "text": text,
            "api_app_id": self.fake.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": self.fake.issue_trigger_id(user),
        }
        response = await self.send_command(fields)
        if response.status_code == 200 and response.content.strip():
            try:
                body = response.json()
            except ValueError:
                body = {"text": response.text}
            if not isinstance(body, dict):
                body = {"text": response.text}
            self.fake.show_ack(response_url, body)
        return response

    # -- modals ---------------------------------------------------------------------------------

    def current_view(self, user: str) -> JSON | None:
        """The modal on top of `user`'s stack, or None."""
        stack = self.fake.view_stack(user)
        return stack[-1] if stack else None

    def _open_view(self, view: JSON | str, user: str) -> JSON:
        """The latest version of a modal `user` has open (not the caller's possibly stale copy)."""
        view_id = view if isinstance(view, str) else view["id"]
        if not self.fake.is_open(view_id):
            raise ClientRefused(f"view {view_id} is not open")
        if self.fake.view_user(view_id) != user:
            raise ClientRefused(f"view {view_id} belongs to {self.fake.view_user(view_id)}")
        return self.fake.view(view_id)

    async def submit_view(
        self, user: str, view: JSON | str, values: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """Submit a modal (a view dict or id) with `values` typed in (see `state_values`).

        With no values it is submitted as it stands (initial values), e.g. a confirmation view.
        The app's response is applied to the user's modals; tests read `response_action` from
        the returned response.
        """
        current = self._open_view(view, user)
        current["state"] = {"values": state_values(current["blocks"], values)}
        payload = {
            **self._base("view_submission", user),
            "trigger_id": self.fake.issue_trigger_id(user),
            "view": current,
            "response_urls": [],
        }
        response = await self.send_interaction(payload)
        if response.status_code == 200:
            body = _json_or_empty(response)
            self.fake.apply_view_response(current["id"], body, current["hash"])
        return response

    async def close_view(self, user: str, view: JSON | str) -> httpx.Response | None:
        """The user closes a modal. Slack tells the app only when `notify_on_close` is set."""
        current = self._open_view(view, user)
        self.fake.close_view(current["id"])
        if not current.get("notify_on_close"):
            return None
        current["state"] = {"values": state_values(current["blocks"], enforce=False)}
        payload = {**self._base("view_closed", user), "view": current, "is_cleared": False}
        return await self.send_interaction(payload)

    async def options(
        self, user: str, view: JSON | str, action_id: str, value: str
    ) -> httpx.Response:
        """The user types `value` into an external select: a `block_suggestion` request."""
        current = self._open_view(view, user)
        block = next(
            (b for b, e in iter_blocks(current["blocks"]) if e.get("action_id") == action_id),
            None,
        )
        if block is None:
            raise KeyError(f"no element with action_id {action_id!r} in view {current['id']}")
        current["state"] = {"values": state_values(current["blocks"], enforce=False)}
        payload = {
            **self._base("block_suggestion", user),
            "container": {"type": "view", "view_id": current["id"]},
            "action_id": action_id,
            "block_id": block["block_id"],
            "value": value,
            "view": current,
        }
        return await self.send_interaction(payload)

    # -- clicks and selections ------------------------------------------------------------------

    async def click(
        self,
        user: str,
        button_text: str,
        message: Message | Ephemeral | None = None,
        view: JSON | str | None = None,
        channel: str | None = None,
        *,
        stale: bool = False,
    ) -> httpx.Response:
        """Click the button labelled `button_text` (exact, else contained; case-insensitive).

        Looks in `message` or `view` when given (their current version, unless `stale`: then
        the given snapshot as is, like a client that has not caught up with an update);
        otherwise in the user's ephemerals (newest first), then the bot's messages (newest
        first; in `channel` when given), then the user's open modal.
        """
        if message is not None and not stale:
            message = self._as_shown_now(message)
        surface, block, button = self._find_button(user, button_text, message, view, channel)
        action: JSON = {
            "type": "button",
            "action_id": button["action_id"],
            "block_id": block["block_id"],
            "text": button["text"],
            "action_ts": _action_ts(),
        }
        for key in ("value", "style", "url"):
            if key in button:
                action[key] = button[key]
        return await self._block_actions(user, surface, action)

    async def select(
        self,
        user: str,
        action_id: str,
        value: Any,
        *,
        message: Message | Ephemeral | None = None,
        view: JSON | str | None = None,
    ) -> httpx.Response:
        """Pick `value` in a select, checkbox, radio or picker (or type into an input with
        `dispatch_action`): a `block_actions` request carrying the new value and state."""
        surface: Message | Ephemeral | JSON
        if message is not None:
            surface = self._as_shown_now(message)
        else:
            current = view if view is not None else self.current_view(user)
            if current is None:
                raise ClientRefused(f"{user} has no open modal")
            surface = self._open_view(current, user)
        blocks = surface.blocks if isinstance(surface, Message | Ephemeral) else surface["blocks"]
        elements = [(b, e) for b, e in iter_blocks(blocks) if e.get("action_id") == action_id]
        if not elements:
            raise KeyError(f"no element with action_id {action_id!r}")
        block, element = elements[0]
        values = state_values(blocks, {action_id: value}, enforce=False)
        entry = values[block["block_id"]][action_id]
        action = {**entry, "action_id": action_id, "block_id": block["block_id"]}
        action["action_ts"] = _action_ts()
        if "placeholder" in element:
            action["placeholder"] = element["placeholder"]
        return await self._block_actions(user, surface, action, state=values)

    def _as_shown_now(self, message: Message | Ephemeral) -> Message | Ephemeral:
        """The current version of a message the user is looking at."""
        if isinstance(message, Message):
            now: Message | Ephemeral = self.fake.message(message.channel, message.ts)
        else:
            now = self.fake.ephemeral(message.ts)
        if now.deleted:
            raise ClientRefused(f"message {message.ts} was deleted")
        return now

    def _find_button(
        self,
        user: str,
        text: str,
        message: Message | Ephemeral | None,
        view: JSON | str | None,
        channel: str | None,
    ) -> tuple[Message | Ephemeral | JSON, JSON, JSON]:
        candidates: list[Message | Ephemeral | JSON]
        if message is not None:
            candidates = [message]
        elif view is not None:
            candidates = [self._open_view(view, user)]
        else:
            candidates = [
                *reversed(self.fake.ephemerals(user=user, channel=channel)),
                *reversed(self.fake.messages(channel)),
            ]
            current = self.current_view(user)
            if current is not None:
                candidates.append(current)
        for surface in candidates:
            blocks = (
                surface.blocks if isinstance(surface, Message | Ephemeral) else surface["blocks"]
            )
            found = find_button(blocks, text)
            if found is not None:
                return surface, found[0], found[1]
        raise AssertionError(f"no button {text!r} visible to {user}")

    async def _block_actions(
        self,
        user: str,
        surface: Message | Ephemeral | JSON,
        action: JSON,
        state: JSON | None = None,
    ) -> httpx.Response:
        payload = {
            **self._base("block_actions", user),
            "trigger_id": self.fake.issue_trigger_id(user),
            "actions": [action],
        }
        if isinstance(surface, Message | Ephemeral):
            if state is None:
                state = state_values(surface.blocks, enforce=False)
            is_ephemeral = isinstance(surface, Ephemeral)
            kind: Literal["message", "ephemeral"] = "ephemeral" if is_ephemeral else "message"
            payload["container"] = {
                "type": "message",
                "message_ts": surface.ts,
                "channel_id": surface.channel,
                "is_ephemeral": is_ephemeral,
            }
            payload["channel"] = self._channel_obj(surface.channel)
            if isinstance(surface, Message):  # Slack sends no message body for ephemerals
                payload["message"] = self.fake.message_payload(surface)
            payload["state"] = {"values": state}
            payload["response_url"] = self.fake.issue_response_url(
                user, surface.channel, (kind, surface.channel, surface.ts)
            )
        else:
            if state is None:
                state = state_values(surface["blocks"], enforce=False)
            payload["container"] = {"type": "view", "view_id": surface["id"]}
            payload["view"] = {**surface, "state": {"values": state}}
        return await self.send_interaction(payload)

    # -- shortcuts and events -------------------------------------------------------------------

    async def shortcut(self, user: str, callback_id: str) -> httpx.Response:
        """A global shortcut."""
        payload = {
            **self._base("shortcut", user),
            "callback_id": callback_id,
            "trigger_id": self.fake.issue_trigger_id(user),
            "action_ts": _action_ts(),
        }
        return await self.send_interaction(payload)

    async def event(
        self, event: JSON, *, event_id: str | None = None, retry_num: int | None = None
    ) -> httpx.Response:
        """Deliver one Events API event inside Slack's `event_callback` envelope.

        To imitate Slack's redelivery after a slow ack, send the same `event_id` again with
        `retry_num` (adds `X-Slack-Retry-Num` and `X-Slack-Retry-Reason: http_timeout`).
        """
        envelope = {
            "token": self.verification_token,
            "team_id": self.fake.team_id,
            "api_app_id": self.fake.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.fake.team_id,
                    "user_id": self.fake.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": secrets.token_hex(8),
        }
        return await self.send_event(envelope, retry_num)

    async def app_home_opened(self, user: str) -> httpx.Response:
        """The user opens the app's Home tab."""
        event: JSON = {
            "type": "app_home_opened",
            "user": user,
            "channel": "D" + user[1:],
            "tab": "home",
            "event_ts": _action_ts(),
        }
        home = self.fake.home(user)
        if home is not None:
            event["view"] = home
        return await self.event(event)

    async def url_verification(self, challenge: str) -> httpx.Response:
        return await self.send_event(
            {"token": self.verification_token, "challenge": challenge, "type": "url_verification"}
        )

    # -- reading what users see -----------------------------------------------------------------
    #
    # With Bolt in HTTP mode the app acknowledges first and keeps working after the response,
    # so what it posts or opens may arrive a moment after the driver's call returns: use the
    # `wait_for_*` helpers rather than reading the fake straight away.

    def find_message(self, contains: str, channel: str | None = None) -> Message:
        """The newest bot message whose visible text contains `contains`."""
        return self.fake.find_message(contains, channel)

    def find_ephemeral(
        self, user: str, contains: str = "", channel: str | None = None
    ) -> Ephemeral:
        """The newest ephemeral shown to `user` whose visible text contains `contains`."""
        found = self.fake.ephemerals(user=user, channel=channel, containing=contains)
        if not found:
            raise AssertionError(f"no ephemeral for {user} containing {contains!r}")
        return found[-1]

    async def wait_for_message(
        self, contains: str, channel: str | None = None, timeout: float = 5.0
    ) -> Message:
        """The newest bot message containing `contains`, waiting for one to appear."""
        await self.fake.async_wait_until(
            lambda: self.fake.messages(channel, containing=contains), timeout
        )
        return self.find_message(contains, channel)

    async def wait_for_ephemeral(
        self, user: str, contains: str = "", channel: str | None = None, timeout: float = 5.0
    ) -> Ephemeral:
        """The newest ephemeral for `user` containing `contains`, waiting for one to appear."""
        await self.fake.async_wait_until(
            lambda: self.fake.ephemerals(user=user, channel=channel, containing=contains), timeout
        )
        return self.find_ephemeral(user, contains, channel)

    async def wait_for_view(self, user: str, timeout: float = 5.0) -> JSON:
        """`user`'s top modal once the app has opened, pushed or updated one of theirs through
        the API since the driver's last request (a `response_action` applies at once)."""

        def changed() -> bool:
            return any(
                call.method in ("views.open", "views.push", "views.update")
                and call.ok
                and self.fake.view_user(call.response["view"]["id"]) == user
                for call in self.fake.calls[self.mark :]
            )

        if not await self.fake.async_wait_until(changed, timeout):
            calls = [c.method for c in self.fake.calls[self.mark :]]
            raise AssertionError(f"the app opened no modal for {user}; calls since: {calls}")
        current = self.current_view(user)
        if current is None:
            raise AssertionError(f"{user} has no open modal")
        return current


def _socket_answer(ack: JSON | None) -> httpx.Response:
    """A Socket Mode acknowledgement as the HTTP answer it stands for."""
    if ack is None:
        return httpx.Response(504, text="no acknowledgement over the socket in time")
    return httpx.Response(200, json=ack) if ack else httpx.Response(200)


def _json_or_empty(response: httpx.Response) -> JSON:
    if not response.content.strip():
        return {}
    body = response.json()
    return body if isinstance(body, dict) else {}


def _action_ts() -> str:
    return f"{time.time():.6f}"
