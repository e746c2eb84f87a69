"""A fake Slack Web API server for end-to-end tests.

`FakeSlack` is a real HTTP server on 127.0.0.1 (a free port), running in a background thread with
its own event loop, so sync and async tests can share it. Point the app's `SLACK_API_URL` at
`fake.url`; the real `slack_sdk` clients talk to it unchanged.

It speaks Slack's wire format: form-encoded, query-string or JSON arguments, `Authorization:
Bearer <token>` (or a `token` argument), HTTP 200 with `{"ok": true, ...}` or `{"ok": false,
"error": ...}`, and HTTP 429 with `Retry-After` for injected rate limits. It keeps what Slack
keeps (channel messages, ephemerals, modals, App Home tabs) so tests can assert on what a user
would see, and it refuses what Slack refuses (bad tokens, oversized or malformed Block Kit,
expired trigger ids, stale view hashes) so the app meets those refusals in tests first.

It also serves the `response_url`s that `SlackDriver` puts into payloads, so `respond(...)` from
the app lands here too (recorded as method `"response_url"`), and Socket Mode:
`apps.connections.open` (with the app-level token) hands out a WebSocket URL on this server, and
`deliver_socket` sends envelopes to the connected app and returns its acknowledgement.

Everything returned to tests is a copy or a frozen snapshot; state is guarded by one lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import secrets
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import WSMsgType, web

JSON = dict[str, Any]
T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Records handed to tests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request that reached the fake: a Web API method or a post to a `response_url`."""

    method: str
    args: JSON
    token: str | None
    status: int = 200
    response: JSON = field(default_factory=dict)
    content_type: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok", self.status == 200))


@dataclass(frozen=True)
class Message:
    """A message the bot posted to a channel, as it stood when read (a copy)."""

    channel: str
    ts: str
    text: str
    blocks: list[JSON]
    thread_ts: str | None = None
    metadata: JSON | None = None
    history: tuple[Message, ...] = ()  # earlier versions, oldest first
    deleted: bool = False

    @property
    def all_text(self) -> str:
        return text_of(self)


@dataclass(frozen=True)
class Ephemeral:
    """A message only `user` sees in `channel`.

    `via` says how it arrived: `chat.postEphemeral`, a post to a `response_url`, or the body of
    the app's acknowledgement of a slash command (Slack shows that to the user too).
    """

    user: str
    channel: str
    ts: str
    text: str
    blocks: list[JSON]
    via: Literal["chat.postEphemeral", "response_url", "ack"]
    thread_ts: str | None = None
    history: tuple[Ephemeral, ...] = ()
    deleted: bool = False

    @property
    def all_text(self) -> str:
        return text_of(self)


class SlackError(Exception):
    """Raised by a method handler: becomes `{"ok": false, "error": error}`."""

    def __init__(self, error: str, problems: Sequence[str] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.problems = list(problems)


@dataclass
class _Fault:
    method: str
    error: str
    status: int
    retry_after: int | None
    remaining: int


@dataclass
class _Trigger:
    user: str
    issued_at: float
    used: bool = False


@dataclass
class _ResponseTarget:
    """Where a `response_url` points: the user and channel of the interaction, and its source."""

    user: str
    channel: str | None
    source: tuple[Literal["message", "ephemeral"], str, str] | None  # kind, channel, ts
    ack_ts: str  # reserved when issued, so an ack body sorts before later responses
    uses: int = 0


@dataclass(frozen=True)
class _Reply:
    status: int
    body: JSON | str
    headers: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Block Kit validation: the limits Slack enforces (the common ones, with json pointers)
# ---------------------------------------------------------------------------------------------

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000

_BLOCK_TYPES = {
    "section",
    "divider",
    "header",
    "context",
    "actions",
    "input",
    "image",
    "rich_text",
    "markdown",
    "file",
    "video",
    "context_actions",
    "table",
}
_SELECT_TYPES = {
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "multi_static_select",
    "multi_external_select",
    "multi_users_select",
    "multi_conversations_select",
    "multi_channels_select",
}
_INPUT_ELEMENT_TYPES = _SELECT_TYPES | {
    "plain_text_input",
    "number_input",
    "email_text_input",
    "url_text_input",
    "checkboxes",
    "radio_buttons",
    "datepicker",
    "timepicker",
    "datetimepicker",
    "rich_text_input",
    "file_input",
}
_INTERACTIVE_TYPES = _INPUT_ELEMENT_TYPES | {"button", "overflow", "workflow_button"}
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Checker:
    """Collects Slack-style problem strings: `[ERROR] <what> [json-pointer:/blocks/0/text]`."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, pointer: str, what: str) -> None:
        self.problems.append(f"[ERROR] {what} [json-pointer:{pointer}]")

    def max_len(self, value: object, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.fail(pointer, f"must be less than {limit + 1} characters")

    def text_object(
        self,
        obj: object,
        pointer: str,
        *,
        limit: int,
        plain_only: bool = False,
        required: bool = True,
    ) -> None:
        if obj is None:
            if required:
                self.fail(pointer, "missing required field")
            return
        if not isinstance(obj, dict):
            self.fail(pointer, "must be a text object")
            return
        kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if obj.get("type") not in kinds:
            self.fail(f"{pointer}/type", f"must be one of {', '.join(kinds)}")
        text = obj.get("text")
        if not isinstance(text, str) or not text:
            self.fail(f"{pointer}/text", "must be more than 0 characters")
        else:
            self.max_len(text, limit, f"{pointer}/text")

    def options(
        self, options: object, pointer: str, *, limit: int, text_limit: int = 75
    ) -> list[JSON]:
        if not isinstance(options, list):
            self.fail(pointer, "must be an array")
            return []
        if not options:
            self.fail(pointer, "must provide at least 1 item")
        if len(options) > limit:
            self.fail(pointer, f"must provide no more than {limit} items")
        for i, option in enumerate(options):
            if not isinstance(option, dict):
                self.fail(f"{pointer}/{i}", "must be an option object")
                continue
            self.text_object(option.get("text"), f"{pointer}/{i}/text", limit=text_limit)
            value = option.get("value")
            if not isinstance(value, str) or not value:
                self.fail(f"{pointer}/{i}/value", "must be more than 0 characters")
            self.max_len(value, 150, f"{pointer}/{i}/value")
        return [o for o in options if isinstance(o, dict)]

    def element(self, element: object, pointer: str) -> None:
        if not isinstance(element, dict):
            self.fail(pointer, "must be an element object")
            return
        kind = element.get("type")
        self.max_len(element.get("action_id"), 255, f"{pointer}/action_id")
        if kind == "button":
            self.text_object(element.get("text"), f"{pointer}/text", limit=75, plain_only=True)
            self.max_len(element.get("value"), 2000, f"{pointer}/value")
            self.max_len(element.get("url"), 3000, f"{pointer}/url")
            style = element.get("style")
            if style is not None and style not in ("primary", "danger"):
                self.fail(f"{pointer}/style", "must be one of primary, danger")
        elif kind in ("static_select", "multi_static_select"):
            self._placeholder(element, pointer)
            if "option_groups" in element:
                groups = element["option_groups"]
                options: list[JSON] = []
                for g, group in enumerate(groups if isinstance(groups, list) else []):
                    options += self.options(
                        group.get("options"), f"{pointer}/option_groups/{g}/options", limit=100
                    )
            else:
                options = self.options(element.get("options"), f"{pointer}/options", limit=100)
            self._initial_options(element, options, pointer)
        elif kind in ("checkboxes", "radio_buttons"):
            options = self.options(element.get("options"), f"{pointer}/options", limit=10)
            self._initial_options(element, options, pointer)
        elif kind == "overflow":
            self.options(element.get("options"), f"{pointer}/options", limit=5)
        elif kind == "plain_text_input":
            self._placeholder(element, pointer)
            self.max_len(element.get("initial_value"), 3000, f"{pointer}/initial_value")
            for key in ("min_length", "max_length"):
                value = element.get(key)
                if isinstance(value, int) and not 0 <= value <= 3000:
                    self.fail(f"{pointer}/{key}", "must be between 0 and 3000")
        elif kind == "number_input":
            if not isinstance(element.get("is_decimal_allowed"), bool):
                self.fail(f"{pointer}/is_decimal_allowed", "missing required field")
        elif kind == "timepicker":
            initial = element.get("initial_time")
            if initial is not None and not (isinstance(initial, str) and _TIME.match(initial)):
                self.fail(f"{pointer}/initial_time", "must be in the format HH:mm")
        elif kind in _SELECT_TYPES:
            self._placeholder(element, pointer)

    def _placeholder(self, element: JSON, pointer: str) -> None:
        if "placeholder" in element:
            self.text_object(
                element["placeholder"], f"{pointer}/placeholder", limit=150, plain_only=True
            )

    def _initial_options(self, element: JSON, options: list[JSON], pointer: str) -> None:
        values = {o.get("value") for o in options}
        chosen: list[object] = []
        if isinstance(element.get("initial_option"), dict):
            chosen.append(element["initial_option"])
        if isinstance(element.get("initial_options"), list):
            chosen += element["initial_options"]
        for option in chosen:
            if not isinstance(option, dict) or option.get("value") not in values:
                self.fail(f"{pointer}/initial_option", "must match one of the provided options")

    def block(self, block: object, pointer: str) -> None:
        if not isinstance(block, dict):
            self.fail(pointer, "must be a block object")
            return
        kind = block.get("type")
        if kind not in _BLOCK_TYPES:
            self.fail(f"{pointer}/type", f"unknown block type {kind!r}")
            return
        self.max_len(block.get("block_id"), 255, f"{pointer}/block_id")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.fail(pointer, "must provide either text or fields")
            if "text" in block:
                self.text_object(block["text"], f"{pointer}/text", limit=3000)
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    self.fail(f"{pointer}/fields", "must provide between 1 and 10 items")
                for i, item in enumerate(fields if isinstance(fields, list) else []):
                    self.text_object(item, f"{pointer}/fields/{i}", limit=2000)
            if "accessory" in block:
                self.element(block["accessory"], f"{pointer}/accessory")
        elif kind == "header":
            self.text_object(block.get("text"), f"{pointer}/text", limit=150, plain_only=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                self.fail(f"{pointer}/elements", "must provide between 1 and 10 items")
            for i, item in enumerate(elements if isinstance(elements, list) else []):
                if isinstance(item, dict) and item.get("type") != "image":
                    self.text_object(item, f"{pointer}/elements/{i}", limit=3000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                self.fail(f"{pointer}/elements", "must provide between 1 and 25 items")
            for i, item in enumerate(elements if isinstance(elements, list) else []):
                self.element(item, f"{pointer}/elements/{i}")
            self._unique_action_ids(elements, f"{pointer}/elements")
        elif kind == "input":
            self.text_object(block.get("label"), f"{pointer}/label", limit=2000, plain_only=True)
            if "hint" in block:
                self.text_object(block["hint"], f"{pointer}/hint", limit=2000, plain_only=True)
            element = block.get("element")
            if element is None:
                self.fail(f"{pointer}/element", "missing required field")
            else:
                self.element(element, f"{pointer}/element")
        elif kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                self.fail(f"{pointer}/text", "must be more than 0 characters")
            self.max_len(text, 12_000, f"{pointer}/text")
        elif kind == "image":
            for key in ("alt_text",):
                if not isinstance(block.get(key), str):
                    self.fail(f"{pointer}/{key}", "missing required field")

    def _unique_action_ids(self, elements: object, pointer: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(elements if isinstance(elements, list) else []):
            action_id = item.get("action_id") if isinstance(item, dict) else None
            if isinstance(action_id, str):
                if action_id in seen:
                    self.fail(f"{pointer}/{i}/action_id", "must be unique within the block")
                seen.add(action_id)

    def blocks(self, blocks: object, pointer: str, *, limit: int) -> None:
        if not isinstance(blocks, list):
            self.fail(pointer, "must be an array")
            return
        if len(blocks) > limit:
            self.fail(pointer, f"must provide no more than {limit} items")
        seen: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(block, f"{pointer}/{i}")
            block_id = block.get("block_id") if isinstance(block, dict) else None
            if isinstance(block_id, str):
                if block_id in seen:
                    self.fail(f"{pointer}/{i}/block_id", "must be unique")
                seen.add(block_id)


def block_problems(blocks: object, *, limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """Why Slack would refuse these blocks (`invalid_blocks`); empty when it would accept them."""
    checker = _Checker()
    checker.blocks(blocks, "/blocks", limit=limit)
    return checker.problems


def view_problems(view: object) -> tuple[list[str], list[str]]:
    """Why Slack would refuse this view: (argument problems, block problems).

    Argument problems (title, submit, close, metadata lengths, type) are `invalid_arguments`;
    block problems are `invalid_blocks`.
    """
    args, blocks = _Checker(), _Checker()
    if not isinstance(view, dict):
        args.fail("/view", "must be a view object")
        return args.problems, blocks.problems
    kind = view.get("type")
    if kind not in ("modal", "home"):
        args.fail("/view/type", "must be one of modal, home")
    if kind == "modal":
        args.text_object(view.get("title"), "/view/title", limit=24, plain_only=True)
        for key in ("submit", "close"):
            args.text_object(
                view.get(key), f"/view/{key}", limit=24, plain_only=True, required=False
            )
        view_blocks = view.get("blocks")
        has_input = isinstance(view_blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in view_blocks
        )
        if has_input and view.get("submit") is None:
            args.fail("/view/submit", "must provide submit when the view has input blocks")
    args.max_len(view.get("private_metadata"), 3000, "/view/private_metadata")
    args.max_len(view.get("callback_id"), 255, "/view/callback_id")
    args.max_len(view.get("external_id"), 255, "/view/external_id")
    blocks.blocks(view.get("blocks"), "/view/blocks", limit=MAX_VIEW_BLOCKS)
    return args.problems, blocks.problems


# ---------------------------------------------------------------------------------------------
# Reading what a user sees
# ---------------------------------------------------------------------------------------------


def text_of(obj: object) -> str:
    """All visible text of a message, ephemeral, view or block list, one piece per line.

    Collects text objects (section text and fields, headers, context, button and option labels,
    input labels, hints and placeholders), rich text, markdown blocks, initial input values, a
    view's title/submit/close and a message's fallback `text`. Skips ids, values, metadata.
    """
    if isinstance(obj, Message | Ephemeral):
        pieces = [obj.text] if obj.text else []
        pieces += _texts(obj.blocks)
        return "\n".join(pieces)
    return "\n".join(_texts(obj))


_INVISIBLE_KEYS = {"private_metadata", "state", "value", "action_id", "block_id", "callback_id"}


def _texts(node: object) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _texts(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("plain_text", "mrkdwn", "text") and isinstance(node.get("text"), str):
        yield node["text"]
        return
    if kind == "markdown" and isinstance(node.get("text"), str):
        yield node["text"]
        return
    if kind == "user" and isinstance(node.get("user_id"), str):
        yield f"<@{node['user_id']}>"
    if kind == "link" and isinstance(node.get("url"), str):
        yield node.get("text") or node["url"]
    if kind == "emoji" and isinstance(node.get("name"), str):
        yield f":{node['name']}:"
    if isinstance(node.get("initial_value"), str):
        yield node["initial_value"]
    for key, value in node.items():
        if key not in _INVISIBLE_KEYS and isinstance(value, dict | list):
            yield from _texts(value)


def iter_blocks(blocks: Iterable[JSON]) -> Iterator[tuple[JSON, JSON]]:
    """Every interactive element with its block: (block, element), in display order."""
    for block in blocks:
        kind = block.get("type")
        if kind == "actions":
            for element in block.get("elements", []):
                yield block, element
        elif kind == "section" and isinstance(block.get("accessory"), dict):
            yield block, block["accessory"]
        elif kind == "input" and isinstance(block.get("element"), dict):
            yield block, block["element"]


def find_button(blocks: Sequence[JSON], text: str) -> tuple[JSON, JSON] | None:
    """The (block, button) whose visible label is `text` (exact, case-insensitive), else the
    only one whose label contains it. None when absent; ValueError when ambiguous."""
    wanted = _norm(text)
    buttons = [(b, e) for b, e in iter_blocks(blocks) if e.get("type") == "button"]
    exact = [(b, e) for b, e in buttons if _norm(text_of(e.get("text"))) == wanted]
    if exact:
        return exact[0]
    partial = [(b, e) for b, e in buttons if wanted in _norm(text_of(e.get("text")))]
    if len(partial) > 1:
        labels = [text_of(e.get("text")) for _, e in partial]
        raise ValueError(f"button text {text!r} is ambiguous: {labels}")
    return partial[0] if partial else None


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


# ---------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------

_ID_CHARS = string.ascii_uppercase + string.digits
_APP_LEVEL_METHODS = {"apps.connections.open"}
_JSON_ARGS = ("blocks", "attachments", "view", "metadata", "user_auth_blocks")


def _slack_id(prefix: str, length: int = 10) -> str:
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def _short_id() -> str:
    """Like the block_id/action_id Slack generates for blocks that have none."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(5))


class FakeSlack:
    """A Slack workspace with one bot, served over HTTP on loopback.

    Configure before or while running: `add_user`, `add_usergroup`, `add_channel`, and the sets
    `not_in_channel` / `missing_channels`. Inject faults with `fail_next`. Read what happened with
    `calls`, `calls_to`, `wait_for` / `async_wait_for`, `messages`, `ephemerals`, `last_view`,
    `home`.
    """

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        *,
        app_token: str = "xapp-test",
        team_id: str = "T0FAKE",
        team_domain: str = "fake",
        team_name: str = "Fake Workspace",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        bot_name: str = "cse-backup-bot",
        app_id: str = "A0FAKE",
        users: Mapping[str, Mapping[str, Any]] | None = None,
        usergroups: Mapping[str, Sequence[str]] | None = None,
        trigger_ttl: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.socket_ack_timeout = 3.0  # Slack waits this long for a Socket Mode acknowledgement
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.trigger_ttl = trigger_ttl
        self.clock = clock
        # Channels where the bot is not a member / which do not exist (tests add ids).
        self.not_in_channel: set[str] = set()
        self.missing_channels: set[str] = set()

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._users: dict[str, JSON] = {}
        self._usergroups: dict[str, JSON] = {}
        self._channels: dict[str, JSON] = {}
        for user_id, profile in (users or {}).items():
            self.add_user(user_id, **profile)
        for group_id, members in (usergroups or {}).items():
            self.add_usergroup(group_id, members)
        self._reset_state()

        self._handlers: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "apps.connections.open": self._apps_connections_open,
        }
        self._ts_counter = 0  # never reset: a ts stays unique for the fake's lifetime
        # Socket Mode: open WebSockets (touched only on the server's loop), tickets, acks.
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_turn = 0
        self._tickets: set[str] = set()
        self._acks: dict[str, asyncio.Future[JSON]] = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    def _reset_state(self) -> None:
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._messages: dict[tuple[str, str], Message] = {}
        self._ephemerals: dict[str, Ephemeral] = {}  # by ts
        self._views: dict[str, JSON] = {}
        self._view_users: dict[str, str] = {}
        self._closed_views: set[str] = set()
        self._stacks: dict[str, list[str]] = {}
        self._homes: dict[str, str] = {}
        self._view_log: list[str] = []  # view ids in order of creation/change
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, _ResponseTarget] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL, for `SLACK_API_URL` / `AsyncWebClient(base_url=...)`."""
        return f"{self.root_url}/api/"

    def start(self) -> FakeSlack:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failure), name="fake-slack", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError("the fake Slack server did not start") from failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None and self._sock is not None
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/hooks/{hook}", self._handle_response_url)
        app.router.add_get("/link/", self._handle_socket)
        app.on_shutdown.append(self._close_sockets)
        runner = web.AppRunner(app, access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, self._sock).start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    # -- configuration --------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        real_name: str | None = None,
        name: str | None = None,
        tz: str = "UTC",
        tz_offset: int | None = None,
        tz_label: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        email: str | None = None,
    ) -> None:
        """Add a user to the workspace, as `users.info` returns it."""
        name = name or user_id.lower()
        real_name = real_name or name
        if tz_offset is None:
            offset = datetime.now(ZoneInfo(tz)).utcoffset()
            tz_offset = int(offset.total_seconds()) if offset else 0
        profile: JSON = {"real_name": real_name, "display_name": name}
        if email:
            profile["email"] = email
        with self._lock:
            self._users[user_id] = {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "real_name": real_name,
                "deleted": deleted,
                "is_bot": is_bot,
                "tz": tz,
                "tz_label": tz_label or tz,
                "tz_offset": tz_offset,
                "profile": profile,
            }

    def add_usergroup(self, group_id: str, users: Sequence[str], handle: str | None = None) -> None:
        with self._lock:
            self._usergroups[group_id] = {
                "id": group_id,
                "team_id": self.team_id,
                "handle": handle or group_id.lower(),
                "name": handle or group_id,
                "users": list(users),
            }

    def add_channel(
        self, channel_id: str, name: str | None = None, members: Sequence[str] | None = None
    ) -> None:
        """Describe a channel for `conversations.info` / `.members`. Unlisted ids still work."""
        with self._lock:
            self._channels[channel_id] = {
                "name": name or channel_id.lower(),
                "members": None if members is None else list(members),
            }

    def user_name(self, user_id: str) -> str:
        with self._lock:
            user = self._users.get(user_id)
            return str(user["name"]) if user else user_id.lower()

    # -- fault injection ------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail before any other check.

        `status=429` answers HTTP 429 `{"ok": false, "error": "ratelimited"}` with `Retry-After`
        (default 1); other statuses answer `{"ok": false, "error": error}` (default
        `internal_error`). `method` may be `"response_url"`.
        """
        if status == 429:
            error = error or "ratelimited"
            retry_after = 1 if retry_after is None else retry_after
        with self._lock:
            self._faults.append(
                _Fault(method, error or "internal_error", status, retry_after, times)
            )

    # -- what happened --------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def mark(self) -> int:
        """The number of calls so far: pass as `since=` to wait only for later calls."""
        with self._lock:
            return len(self._calls)

    def _find_call(
        self, method: str, predicate: Callable[[Call], bool] | None, since: int
    ) -> Call | None:
        for call in self._calls[since:]:
            if call.method == method and (predicate is None or predicate(call)):
                return call
        return None

    def _not_seen(self, method: str) -> str:
        seen = [f"{c.method}({'ok' if c.ok else c.response.get('error')})" for c in self._calls]
        return f"no matching {method} call; calls so far: {seen}"

    def wait_until(self, condition: Callable[[], T | None], timeout: float = 5.0) -> T | None:
        """Wait for `condition()` to return something truthy and return it (None on timeout).

        The condition runs under the fake's lock and is re-checked after every call it serves.
        Blocks the calling thread: from async tests whose app runs in the same event loop use
        `async_wait_until`, or the app can never make progress.
        """
        with self._changed:
            return self._changed.wait_for(condition, timeout) or None

    async def async_wait_until(
        self, condition: Callable[[], T | None], timeout: float = 5.0
    ) -> T | None:
        """`wait_until` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                found = condition()
            if found or loop.time() >= deadline:
                return found or None
            await asyncio.sleep(0.01)

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """The first call of `method` (from index `since`) matching `predicate`, waiting for it.

        Raises AssertionError, listing the calls seen, when none comes within `timeout`.
        Blocking: see `wait_until`; async tests use `async_wait_for`.
        """
        found = self.wait_until(lambda: self._find_call(method, predicate, since), timeout)
        if found is None:
            with self._lock:
                raise AssertionError(self._not_seen(method))
        return found

    async def async_wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """`wait_for` without blocking the event loop."""
        found = await self.async_wait_until(
            lambda: self._find_call(method, predicate, since), timeout
        )
        if found is None:
            with self._lock:
                raise AssertionError(self._not_seen(method))
        return found

    def reset(self) -> None:
        """Forget calls, faults, messages, views and triggers; keep users, groups, channels."""
        with self._lock:
            self._reset_state()

    # -- what users see -------------------------------------------------------------------------

    def messages(
        self,
        channel: str | None = None,
        *,
        containing: str | None = None,
        include_deleted: bool = False,
    ) -> list[Message]:
        """Messages posted by the bot, oldest first (thread replies included), optionally only
        those whose visible text contains `containing` (case-insensitive)."""
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if (channel is None or m.channel == channel)
                and (include_deleted or not m.deleted)
                and (containing is None or _norm(containing) in _norm(m.all_text))
            ]
            return copy.deepcopy(sorted(found, key=lambda m: _ts_key(m.ts)))

    def message(self, channel: str, ts: str) -> Message:
        """One message by channel and ts, as it stands now."""
        with self._lock:
            try:
                return copy.deepcopy(self._messages[(channel, ts)])
            except KeyError:
                raise KeyError(f"no message {ts} in {channel}") from None

    def ephemeral(self, ts: str) -> Ephemeral:
        """One ephemeral by ts, as it stands now."""
        with self._lock:
            try:
                return copy.deepcopy(self._ephemerals[ts])
            except KeyError:
                raise KeyError(f"no ephemeral {ts}") from None

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's replies in the thread under `thread_ts`, oldest first."""
        return [m for m in self.messages(channel) if m.thread_ts == thread_ts and m.ts != thread_ts]

    def find_message(self, contains: str, channel: str | None = None) -> Message:
        """The newest message whose visible text contains `contains` (case-insensitive)."""
        found = self.messages(channel, containing=contains)
        if not found:
            raise AssertionError(
                f"no message containing {contains!r} in {channel or 'any channel'}"
            )
        return found[-1]

    def ephemerals(
        self,
        user: str | None = None,
        channel: str | None = None,
        *,
        containing: str | None = None,
        include_deleted: bool = False,
    ) -> list[Ephemeral]:
        """Ephemeral messages, oldest first, whichever way they were sent."""
        with self._lock:
            found = [
                e
                for e in self._ephemerals.values()
                if (user is None or e.user == user)
                and (channel is None or e.channel == channel)
                and (include_deleted or not e.deleted)
                and (containing is None or _norm(containing) in _norm(e.all_text))
            ]
            return copy.deepcopy(sorted(found, key=lambda e: _ts_key(e.ts)))

    @property
    def views_by_id(self) -> dict[str, JSON]:
        """Every view ever opened, pushed or published, in its latest version."""
        with self._lock:
            return copy.deepcopy(self._views)

    def view(self, view_id: str) -> JSON:
        with self._lock:
            try:
                return copy.deepcopy(self._views[view_id])
            except KeyError:
                raise KeyError(f"no view {view_id}") from None

    def is_open(self, view_id: str) -> bool:
        with self._lock:
            return view_id in self._views and view_id not in self._closed_views

    def last_view(self, user: str | None = None) -> JSON | None:
        """The modal most recently opened, pushed or updated (for `user`), or None."""
        with self._lock:
            for view_id in reversed(self._view_log):
                view = self._views[view_id]
                if view["type"] == "modal" and user in (None, self._view_users[view_id]):
                    return copy.deepcopy(view)
            return None

    def view_stack(self, user: str) -> list[JSON]:
        """The modals `user` has open now, bottom first."""
        with self._lock:
            return [copy.deepcopy(self._views[v]) for v in self._stacks.get(user, [])]

    def view_user(self, view_id: str) -> str:
        with self._lock:
            return self._view_users[view_id]

    def home(self, user: str) -> JSON | None:
        """The App Home tab published for `user`, or None."""
        with self._lock:
            view_id = self._homes.get(user)
            return copy.deepcopy(self._views[view_id]) if view_id else None

    # -- used by the driver: what Slack does on the user's side ---------------------------------

    def issue_trigger_id(self, user: str) -> str:
        """A fresh trigger id for an interaction by `user`, valid for `trigger_ttl` seconds."""
        trigger_id = f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        with self._lock:
            self._triggers[trigger_id] = _Trigger(user, self.clock())
        return trigger_id

    def expire_trigger(self, trigger_id: str) -> None:
        """Age a trigger id past its lifetime (no sleeping in tests)."""
        with self._lock:
            self._triggers[trigger_id].issued_at = float("-inf")

    def issue_response_url(
        self,
        user: str,
        channel: str | None,
        source: tuple[Literal["message", "ephemeral"], str, str] | None = None,
    ) -> str:
        """A `response_url` served by this fake; `source` is the (kind, channel, ts) it answers."""
        hook = secrets.token_hex(12)
        with self._lock:
            self._response_urls[hook] = _ResponseTarget(user, channel, source, self._next_ts())
        return f"{self.root_url}/hooks/{hook}"

    def show_ack(self, response_url: str, body: JSON) -> None:
        """Show a slash command's acknowledgement body to the user, as Slack does.

        Raises AssertionError for a body Slack would refuse to show.
        """
        hook = response_url.rsplit("/", 1)[-1]
        with self._lock:
            try:
                self._deliver_response(self._response_urls[hook], body, via="ack")
            except SlackError as exc:
                raise AssertionError(f"Slack refuses the ack: {exc.error} {exc.problems}") from None
            self._changed.notify_all()

    def apply_view_response(
        self, view_id: str, body: JSON, submitted_hash: str | None = None
    ) -> None:
        """Apply a `view_submission` acknowledgement (`response_action`) to the user's modals.

        Slack applies the ack before anything the app does after acknowledging; here the app's
        later `views.update` may land first. So when the view's hash is no longer
        `submitted_hash`, that later update is kept and the ack's `update` is not re-applied.

        Raises AssertionError for a response Slack would refuse (the user would see "We had
        some trouble connecting").
        """
        action = body.get("response_action")
        with self._lock:
            user = self._view_users[view_id]
            stack = self._stacks.setdefault(user, [])
            if action in ("update", "push"):
                arg_problems, blk_problems = view_problems(body.get("view"))
                if arg_problems or blk_problems:
                    raise AssertionError(
                        f"Slack refuses the {action} view: {arg_problems + blk_problems}"
                    )
                if action == "update":
                    changed_since = submitted_hash not in (None, self._views[view_id]["hash"])
                    if not changed_since:
                        self._store_view(view_id, body["view"], user)
                else:
                    if len(stack) >= 3:
                        raise AssertionError("Slack refuses push: push_limit_reached")
                    self._new_view(body["view"], user, previous=view_id)
            elif action == "errors":
                errors = body.get("errors")
                inputs = {
                    b.get("block_id")
                    for b in self._views[view_id]["blocks"]
                    if b.get("type") == "input"
                }
                if not isinstance(errors, dict) or not errors or not set(errors) <= inputs:
                    raise AssertionError(
                        f"Slack refuses errors {errors!r}: keys must be input block ids {inputs}"
                    )
            elif action == "clear":
                for open_id in stack:
                    self._closed_views.add(open_id)
                stack.clear()
            elif action is None:
                self.close_view(view_id)
            else:
                raise AssertionError(f"unknown response_action {action!r}")
            self._changed.notify_all()

    def close_view(self, view_id: str) -> None:
        """The user closed (or submitted) this modal: it and any pushed above it close."""
        with self._lock:
            user = self._view_users[view_id]
            stack = self._stacks.get(user, [])
            if view_id in stack:
                for open_id in stack[stack.index(view_id) :]:
                    self._closed_views.add(open_id)
                del stack[stack.index(view_id) :]
            self._closed_views.add(view_id)

    # -- HTTP plumbing --------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args, token = await _read_args(request)
        reply = self._dispatch(method, args, token, request.content_type)
        assert isinstance(reply.body, dict)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        reply = self._respond(request.match_info["hook"], body, str(request.url))
        text = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        return web.Response(status=reply.status, text=text, headers=reply.headers)

    def _dispatch(self, method: str, args: JSON, token: str | None, content_type: str) -> _Reply:
        with self._lock:
            reply = self._take_fault(method)
            if reply is None:
                reply = self._run_method(method, args, token)
            assert isinstance(reply.body, dict)
            recorded = copy.deepcopy(args)
            self._calls.append(
                Call(method, recorded, token, reply.status, reply.body, content_type)
            )
            self._changed.notify_all()
            return reply

    def _run_method(self, method: str, args: JSON, token: str | None) -> _Reply:
        handler = self._handlers.get(method)
        if handler is None:
            return _Reply(200, {"ok": False, "error": "unknown_method", "req_method": method})
        if not token:
            return _Reply(200, {"ok": False, "error": "not_authed"})
        if token not in (self.bot_token, self.app_token):
            return _Reply(200, {"ok": False, "error": "invalid_auth"})
        wanted = self.app_token if method in _APP_LEVEL_METHODS else self.bot_token
        if token != wanted:
            return _Reply(200, {"ok": False, "error": "not_allowed_token_type"})
        try:
            return _Reply(200, {"ok": True, **handler(args)})
        except SlackError as exc:
            body: JSON = {"ok": False, "error": exc.error}
            if exc.problems:
                body["errors"] = exc.problems
                body["response_metadata"] = {"messages": exc.problems}
            return _Reply(200, body)

    def _take_fault(self, method: str) -> _Reply | None:
        for fault in self._faults:
            if fault.method == method and fault.remaining > 0:
                fault.remaining -= 1
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                return _Reply(fault.status, {"ok": False, "error": fault.error}, headers)
        return None

    # -- method handlers (run under the lock) ---------------------------------------------------

    def _auth_test(self, args: JSON) -> JSON:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: JSON) -> JSON:
        channel = self._channel_for_posting(args)
        text, blocks = self._message_content(args, required=True)
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=text or "",
            blocks=blocks or [],
            thread_ts=_opt_str(args.get("thread_ts")),
            metadata=args.get("metadata") if isinstance(args.get("metadata"), dict) else None,
        )
        self._messages[(channel, message.ts)] = message
        return {"channel": channel, "ts": message.ts, "message": self.message_payload(message)}

    def _chat_post_ephemeral(self, args: JSON) -> JSON:
        channel = self._channel_for_posting(args)
        user = _required(args, "user")
        text, blocks = self._message_content(args, required=True)
        ephemeral = Ephemeral(
            user=user,
            channel=channel,
            ts=self._next_ts(),
            text=text or "",
            blocks=blocks or [],
            via="chat.postEphemeral",
            thread_ts=_opt_str(args.get("thread_ts")),
        )
        self._ephemerals[ephemeral.ts] = ephemeral
        return {"message_ts": ephemeral.ts}

    def _chat_update(self, args: JSON) -> JSON:
        channel = self._existing_channel(_required(args, "channel", "channel_not_found"))
        ts = _required(args, "ts", "message_not_found")
        old = self._messages.get((channel, ts))
        if old is None or old.deleted:
            raise SlackError("message_not_found")
        text, blocks = self._message_content(args, required=False)
        new = _revised(
            old,
            old.text if text is None else text,
            old.blocks if blocks is None else blocks,  # Slack keeps omitted blocks
        )
        if isinstance(args.get("metadata"), dict):
            new = replace(new, metadata=args["metadata"])
        if not new.text and not new.blocks:
            raise SlackError("no_text")
        self._messages[(channel, ts)] = new
        return {
            "channel": channel,
            "ts": ts,
            "text": new.text,
            "message": self.message_payload(new),
        }

    def _chat_delete(self, args: JSON) -> JSON:
        channel = self._existing_channel(_required(args, "channel", "channel_not_found"))
        ts = _required(args, "ts", "message_not_found")
        old = self._messages.get((channel, ts))
        if old is None or old.deleted:
            raise SlackError("message_not_found")
        self._messages[(channel, ts)] = replace(old, deleted=True)
        return {"channel": channel, "ts": ts}

    def _chat_get_permalink(self, args: JSON) -> JSON:
        channel = self._existing_channel(_required(args, "channel", "channel_not_found"))
        ts = _required(args, "message_ts", "message_not_found")
        if (channel, ts) not in self._messages:
            raise SlackError("message_not_found")
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _views_open(self, args: JSON) -> JSON:
        user = self._use_trigger(args)
        view = self._checked_view(args, kind="modal")
        if view.get("external_id") and self._external_id_taken(view["external_id"]):
            raise SlackError("duplicate_external_id")
        for open_id in self._stacks.get(user, []):
            self._closed_views.add(open_id)
        self._stacks[user] = []
        return {"view": self._new_view(view, user)}

    def _views_push(self, args: JSON) -> JSON:
        user = self._use_trigger(args)
        view = self._checked_view(args, kind="modal")
        stack = self._stacks.get(user, [])
        if not stack:
            raise SlackError("not_found")
        if len(stack) >= 3:
            raise SlackError("push_limit_reached")
        return {"view": self._new_view(view, user, previous=stack[-1])}

    def _views_update(self, args: JSON) -> JSON:
        view_id = _opt_str(args.get("view_id"))
        external_id = _opt_str(args.get("external_id"))
        if view_id is None and external_id is not None:
            view_id = next(
                (v for v, view in self._views.items() if view.get("external_id") == external_id),
                None,
            )
        elif view_id is None:
            raise SlackError("invalid_arguments", ["[ERROR] view_id or external_id is required"])
        if view_id is None or view_id not in self._views or view_id in self._closed_views:
            raise SlackError("not_found")
        current = self._views[view_id]
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._checked_view(args, kind=current["type"])
        return {"view": self._store_view(view_id, view, self._view_users[view_id])}

    def _views_publish(self, args: JSON) -> JSON:
        user = _required(args, "user_id", "invalid_arguments")
        view = self._checked_view(args, kind="home")
        current_id = self._homes.get(user)
        if current_id is None:
            stored = self._new_view(view, user)
            self._homes[user] = stored["id"]
            return {"view": stored}
        if args.get("hash") and args["hash"] != self._views[current_id]["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._store_view(current_id, view, user)}

    def _users_info(self, args: JSON) -> JSON:
        user = self._users.get(str(args.get("user")))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _usergroups_list(self, args: JSON) -> JSON:
        include_users = str(args.get("include_users", "")).lower() in ("1", "true")
        groups = []
        for group in self._usergroups.values():
            item = {k: v for k, v in group.items() if k != "users" or include_users}
            item["user_count"] = len(group["users"])
            groups.append(copy.deepcopy(item))
        return {"usergroups": groups}

    def _usergroups_users_list(self, args: JSON) -> JSON:
        group = self._usergroups.get(str(args.get("usergroup")))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _conversations_info(self, args: JSON) -> JSON:
        channel = self._existing_channel(_required(args, "channel", "channel_not_found"))
        info = self._channels.get(channel, {})
        return {
            "channel": {
                "id": channel,
                "name": info.get("name", channel.lower()),
                "is_channel": channel.startswith("C"),
                "is_group": channel.startswith("G"),
                "is_im": channel.startswith("D"),
                "is_private": channel.startswith("G"),
                "is_archived": False,
                "is_member": channel not in self.not_in_channel,
            }
        }

    def _apps_connections_open(self, args: JSON) -> JSON:
        ticket = secrets.token_hex(16)
        self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"
        return {"url": url}

    def _conversations_members(self, args: JSON) -> JSON:
        channel = self._existing_channel(_required(args, "channel", "channel_not_found"))
        members = self._channels.get(channel, {}).get("members")
        if members is None:
            members = list(self._users)
        return {"members": list(members), "response_metadata": {"next_cursor": ""}}

    # -- helpers for handlers -------------------------------------------------------------------

    def _existing_channel(self, channel: str) -> str:
        if channel in self.missing_channels:
            raise SlackError("channel_not_found")
        if channel[:1] in ("U", "W"):  # posting to a user id goes to the DM with that user
            return "D" + channel[1:]
        return channel

    def _channel_for_posting(self, args: JSON) -> str:
        channel = self._existing_channel(_required(args, "channel", "channel_not_found"))
        if channel in self.not_in_channel:
            raise SlackError("not_in_channel")
        return channel

    def _message_content(
        self, args: JSON, *, required: bool
    ) -> tuple[str | None, list[JSON] | None]:
        text = _opt_str(args.get("text"))
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # a form-encoded value that was not valid JSON
            raise SlackError("invalid_blocks_format")
        if required and not text and not blocks and not args.get("attachments"):
            raise SlackError("no_text")
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            raise SlackError("msg_too_long")
        if blocks is not None:
            problems = block_problems(blocks)
            if problems:
                raise SlackError("invalid_blocks", problems)
            blocks = _with_ids(blocks)
        return text, blocks

    def _use_trigger(self, args: JSON) -> str:
        trigger_id = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger_id:
            raise SlackError("invalid_arguments", ["[ERROR] trigger_id is required"])
        trigger = self._triggers.get(str(trigger_id))
        if trigger is None or self.clock() - trigger.issued_at > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        if trigger.used:
            raise SlackError("trigger_exchanged")
        trigger.used = True
        return trigger.user

    def _checked_view(self, args: JSON, *, kind: str) -> JSON:
        view = args.get("view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", ["[ERROR] view is required [json-pointer:/view]"])
        arg_problems, blk_problems = view_problems(view)
        if view.get("type") != kind:
            arg_problems.append(f"[ERROR] must be {kind} [json-pointer:/view/type]")
        if arg_problems:
            raise SlackError("invalid_arguments", arg_problems + blk_problems)
        if blk_problems:
            raise SlackError("invalid_blocks", blk_problems)
        return view

    def _external_id_taken(self, external_id: str) -> bool:
        return any(v.get("external_id") == external_id for v in self._views.values())

    def _new_view(self, view: JSON, user: str, previous: str | None = None) -> JSON:
        view_id = _slack_id("V")
        root = self._views[previous]["root_view_id"] if previous else view_id
        self._views[view_id] = {"id": view_id, "root_view_id": root, "previous_view_id": previous}
        self._stacks.setdefault(user, [])
        if view["type"] == "modal":
            self._stacks[user].append(view_id)
        return self._store_view(view_id, view, user)

    def _store_view(self, view_id: str, view: JSON, user: str) -> JSON:
        """Save a new version of a view as Slack returns it (ids kept, fresh hash)."""
        old = self._views[view_id]
        stored: JSON = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": _with_ids(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": old.get("previous_view_id"),
            "root_view_id": old.get("root_view_id", view_id),
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        if "title" in view:
            stored["title"] = copy.deepcopy(view["title"])
        if "submit_disabled" in view:
            stored["submit_disabled"] = view["submit_disabled"]
        self._views[view_id] = stored
        self._view_users[view_id] = user
        self._view_log.append(view_id)
        return copy.deepcopy(stored)

    def message_payload(self, message: Message) -> JSON:
        """The message object as Slack returns it and puts it into `block_actions` payloads."""
        payload: JSON = {
            "type": "message",
            "subtype": "bot_message",
            "text": message.text,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": message.ts,
            "blocks": copy.deepcopy(message.blocks),
        }
        if message.thread_ts:
            payload["thread_ts"] = message.thread_ts
        if message.metadata is not None:
            payload["metadata"] = copy.deepcopy(message.metadata)
        if message.history:
            payload["edited"] = {"user": self.bot_user_id, "ts": message.ts}
        return payload

    def _next_ts(self) -> str:
        self._ts_counter += 1
        return f"{int(time.time())}.{self._ts_counter:06d}"

    # -- Socket Mode ----------------------------------------------------------------------------

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode connections the app holds open now."""
        with self._lock:
            return len(self._sockets)

    async def async_wait_for_sockets(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until the app holds at least `count` Socket Mode connections."""
        if not await self.async_wait_until(lambda: len(self._sockets) >= count, timeout):
            raise AssertionError(f"{len(self._sockets)} Socket Mode connection(s), wanted {count}")

    async def deliver_socket(
        self,
        envelope_type: Literal["slash_commands", "interactive", "events_api"],
        payload: JSON,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> JSON | None:
        """Send one envelope to a connected app (round robin over its connections) and return
        the acknowledgement's payload ({} for a bare ack), or None when none comes within
        `socket_ack_timeout`. Call from any event loop."""
        assert self._loop is not None, "the fake is not running"
        envelope = {
            "envelope_id": str(uuid.uuid4()),
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": envelope_type != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        future = asyncio.run_coroutine_threadsafe(self._send_envelope(envelope), self._loop)
        return await asyncio.wrap_future(future)

    async def disconnect_sockets(self, reason: str = "refresh_requested") -> None:
        """Ask every connected app to reconnect, as Slack does now and then."""
        assert self._loop is not None, "the fake is not running"

        async def send() -> None:
            message = json.dumps({"type": "disconnect", "reason": reason})
            for ws in list(self._sockets):
                await ws.send_str(message)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(send(), self._loop))

    async def _send_envelope(self, envelope: JSON) -> JSON | None:
        with self._lock:
            if not self._sockets:
                raise AssertionError("no Socket Mode connection: is the app connected?")
            ws = self._sockets[self._socket_turn % len(self._sockets)]
            self._socket_turn += 1
        ack: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self._acks[envelope["envelope_id"]] = ack
        try:
            await ws.send_str(json.dumps(envelope))
            return await asyncio.wait_for(ack, self.socket_ack_timeout)
        except TimeoutError:
            return None
        finally:
            self._acks.pop(envelope["envelope_id"], None)

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)  # a URL is good for one connection
        if not known:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._changed:
            self._sockets.append(ws)
            count = len(self._sockets)
            self._changed.notify_all()
        hello = {
            "type": "hello",
            "num_connections": count,
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    ack = json.loads(message.data)
                    future = self._acks.get(str(ack.get("envelope_id")))
                    if future is not None and not future.done():
                        future.set_result(ack.get("payload") or {})
        finally:
            with self._changed:
                self._sockets.remove(ws)
                self._changed.notify_all()
        return ws

    # -- response_url ---------------------------------------------------------------------------

    def _respond(self, hook: str, body: object, url: str) -> _Reply:
        with self._lock:
            fault = self._take_fault("response_url")
            if fault is not None:  # webhooks answer errors as plain text
                assert isinstance(fault.body, dict)
                reply = _Reply(fault.status, str(fault.body["error"]), fault.headers)
            else:
                reply = self._run_response_url(hook, body)
            ok = reply.status == 200
            args = {**(body if isinstance(body, dict) else {}), "response_url": url}
            response: JSON = {"ok": True} if ok else {"ok": False, "error": reply.body}
            self._calls.append(Call("response_url", args, None, reply.status, response))
            self._changed.notify_all()
            return reply

    def _run_response_url(self, hook: str, body: object) -> _Reply:
        target = self._response_urls.get(hook)
        if target is None:
            return _Reply(404, "no_service")
        if target.uses >= 5:
            return _Reply(404, "used_url")
        if not isinstance(body, dict):
            return _Reply(400, "invalid_payload")
        try:
            self._deliver_response(target, body, via="response_url")
        except SlackError as exc:
            return _Reply(400, exc.error)
        target.uses += 1
        return _Reply(200, "ok")

    def _deliver_response(
        self, target: _ResponseTarget, body: JSON, via: Literal["response_url", "ack"]
    ) -> None:
        """What Slack does with a `response_url` post (or a slash command's ack body)."""
        source = target.source
        if body.get("delete_original"):
            if source is not None:
                self._delete_source(source)
            return
        text, blocks = self._message_content(body, required=True)
        if body.get("replace_original") and source is not None:
            kind, channel, ts = source
            if kind == "message":
                self._messages[(channel, ts)] = _revised(
                    self._messages[(channel, ts)], text or "", blocks or []
                )
            else:
                self._ephemerals[ts] = _revised(self._ephemerals[ts], text or "", blocks or [])
            return
        channel = target.channel or "D" + target.user[1:]
        thread_ts = _opt_str(body.get("thread_ts"))
        ts = target.ack_ts if via == "ack" else self._next_ts()
        if body.get("response_type") == "in_channel":
            self._messages[(channel, ts)] = Message(
                channel, ts, text or "", blocks or [], thread_ts=thread_ts
            )
        else:
            self._ephemerals[ts] = Ephemeral(
                target.user, channel, ts, text or "", blocks or [], via, thread_ts=thread_ts
            )

    def _delete_source(self, source: tuple[str, str, str]) -> None:
        kind, channel, ts = source
        if kind == "message" and (channel, ts) in self._messages:
            self._messages[(channel, ts)] = replace(self._messages[(channel, ts)], deleted=True)
        elif kind == "ephemeral" and ts in self._ephemerals:
            self._ephemerals[ts] = replace(self._ephemerals[ts], deleted=True)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


async def _read_args(request: web.Request) -> tuple[JSON, str | None]:
    """Arguments from the query string and a form or JSON body; the token from either place."""
    args: JSON = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                args.update(body)
        else:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    token: str | None = None
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        token = authorization.removeprefix("Bearer ").strip()
    if "token" in args:
        token = token or str(args["token"])
        del args["token"]
    for key in _JSON_ARGS:  # form-encoded structures arrive as JSON strings
        if isinstance(args.get(key), str):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(args[key])
    return args, token


_Shown = TypeVar("_Shown", Message, Ephemeral)


def _revised(old: _Shown, text: str, blocks: list[JSON]) -> _Shown:
    """`old` with new content, keeping its earlier versions in `history`."""
    return replace(old, text=text, blocks=blocks, history=(*old.history, replace(old, history=())))


def _ts_key(ts: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ts.split("."))


def _with_ids(blocks: list[JSON]) -> list[JSON]:
    """A copy of `blocks` where every block and interactive element has an id, as Slack adds."""
    result = copy.deepcopy(blocks)
    for block in result:
        block.setdefault("block_id", _short_id())
        for _, element in iter_blocks([block]):
            if element.get("type") in _INTERACTIVE_TYPES:
                element.setdefault("action_id", _short_id())
    return result


def _required(args: JSON, key: str, error: str = "invalid_arguments") -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise SlackError(error)
    return value


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
