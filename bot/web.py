"""The HTTP server: Slack's requests (HTTP mode) and the health and metrics endpoints.

POST /slack/events   commands, interactivity, options, events (signature verified here, before
                     anything is parsed, and again by Bolt; no setting turns either off)
GET  /healthz        the process is alive
GET  /readyz         Redis answers (and, in Socket Mode, the socket is connected), else 503
GET  /metrics        Prometheus text format
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot import metrics
from bot.slack.reply import channel_of, payload_kind, user_of
from bot.store import RequestStore

log = logging.getLogger("bot.web")

PING_TIMEOUT = 2.0
MAX_BODY = 1024 * 1024
# Slack's rule: a request signed more than five minutes ago (or ahead) is refused as a replay.
MAX_SIGNATURE_AGE = 300
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")
# What parsing a body that is not a Slack payload (bad UTF-8, bad JSON, a JSON list) raises.
_UNREADABLE = (ValueError, TypeError, AttributeError, KeyError, IndexError)


def signed_by_slack(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, now: float
) -> bool:
    """Slack's v0 request signature: HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing
    secret, and a timestamp within five minutes of `now`. Anything malformed is simply false."""
    if not secret or timestamp is None or signature is None:
        return False
    if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
        return False
    if abs(now - int(timestamp)) > MAX_SIGNATURE_AGE:
        return False
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return hmac.compare_digest(f"v0={digest.hexdigest()}".encode(), signature.encode())


def _unquote_plus(text: str) -> str:
    """urllib.parse.unquote_plus, in C for the usual case: Slack percent-encodes a whole JSON
    payload, and urllib's pure-Python loop over every escape took most of an ack's parsing."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    if "\\" not in text and text.isascii():
        try:
            escaped = text.replace("%", "\\x").encode("ascii").decode("unicode_escape")
            return escaped.encode("latin-1").decode("utf-8")
        except UnicodeError:  # a malformed escape or bytes that are not UTF-8: urllib's rules
            pass
    return unquote(text)


def form_fields(body: str) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as `dict(parse_qsl(body,
    keep_blank_values=True))` gives it, faster."""
    fields: dict[str, str] = {}
    for pair in body.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            fields[_unquote_plus(name)] = _unquote_plus(value)
    return fields


def slack_body(body: str, content_type: str | None) -> Any:
    """A Slack request body as Bolt parses it (JSON events; form-encoded commands; interactivity
    as a form with one `payload` field of JSON), but faster, and a slash command whose text
    contains the word "payload" stays a command (Bolt reads any body containing it as
    interactivity, and finds no payload)."""
    if not body:
        return {}
    if content_type == "application/json" or body.startswith("{"):
        return json.loads(body)
    fields = form_fields(body)
    if "payload" in fields:
        return json.loads(fields["payload"])
    return fields


def bolt_request(body: str, query: str, content_type: str | None, headers: Any) -> AsyncBoltRequest:
    """The Bolt request for an HTTP body, parsed by `slack_body`. Bolt takes a parsed body only
    in its Socket Mode form; the request is an HTTP one again once made, with the raw body its
    own signature check reads."""
    media_type = (content_type or "").split(";")[0].strip() or None
    parsed = slack_body(body, media_type)
    if not isinstance(parsed, dict):
        raise ValueError("the body is not an object")
    request = AsyncBoltRequest(body=parsed, query=query, headers=headers, mode="socket_mode")
    request.raw_body = body
    request.mode = "http"
    return request


class Busy:
    """Whether this process is busy answering Slack: a hint for the follow-up worker (bot.worker),
    which holds its work while acknowledgements are coming in.

    Crowded: another request is being answered, or the one before started less than `quiet`
    seconds earlier (a closed loop of clients keeps few in flight at once, yet never lets up).
    Idle: nothing answered and nothing new for `quiet` seconds; `when_idle` callbacks run then.
    """

    def __init__(self, quiet: float = 0.02) -> None:
        self.quiet = quiet
        self.count = 0
        self._last = float("-inf")  # when the latest request started (monotonic)
        self._gap = float("inf")  # seconds between the latest two starts
        self._on_idle: list[Callable[[], None]] = []
        self._check: asyncio.TimerHandle | None = None

    def enter(self) -> None:
        now = time.monotonic()
        self.count += 1
        self._gap, self._last = now - self._last, now

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0 and self._on_idle and self._check is None:
            self._check = asyncio.get_running_loop().call_later(self.quiet, self._maybe_idle)

    def crowded(self) -> bool:
        return self.count > 1 or self._gap < self.quiet

    def when_idle(self, call: Callable[[], None]) -> None:
        self._on_idle.append(call)

    def _maybe_idle(self) -> None:
        self._check = None
        if self.count:
            return  # leave() looks again when this one ends
        wait = self._last + self.quiet - time.monotonic()
        if wait > 0:
            self._check = asyncio.get_running_loop().call_later(wait, self._maybe_idle)
            return
        for call in self._on_idle:
            call()


BUSY = Busy()


def _refused(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


@dataclass
class Readiness:
    """What /readyz checks. `socket_connected` (and `socket_problem`, why the last attempt to
    connect failed) are set in Socket Mode only."""

    store: RequestStore
    socket_connected: Callable[[], Awaitable[bool]] | None = None
    socket_problem: Callable[[], str | None] | None = None
    stopping: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    async def check(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        if self.stopping:
            checks["shutdown"] = "the bot is shutting down"
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await self.store.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # any failure means not ready; say which, without secrets
            metrics.REDIS_ERRORS.inc()
            checks["redis"] = f"not answering ({type(exc).__name__})"
        if self.socket_connected is not None:
            try:
                connected = await self.socket_connected()
            except Exception:
                connected = False
            problem = self.socket_problem() if self.socket_problem and not connected else None
            checks["socket_mode"] = (
                "ok"
                if connected
                else "not connected to Slack" + (f": {problem}" if problem else "")
            )
        ok = all(v == "ok" for k, v in checks.items() if k != "shutdown") and not self.stopping
        return ok, checks


def record_ack(body: dict[str, Any], status: int, seconds: float) -> None:
    """One Slack request answered (over HTTP or the socket): the ack latency, and one log line
    with who and where, never the payload."""
    kind = payload_kind(body)
    if status == 401:  # the signature did not verify: nothing in the body can be trusted
        metrics.INTERACTIONS.labels(kind, "bad_signature").inc()
        log.warning(
            "a request to /slack/events failed signature verification (is SLACK_SIGNING_SECRET "
            "the app's current Signing Secret?)",
            extra={"event": "slack.bad_signature", "kind": kind},
        )
        return
    metrics.ACK_LATENCY.labels(kind).observe(seconds)
    log.info(
        "slack %s acknowledged with %d in %.0f ms",
        kind,
        status,
        seconds * 1000,
        extra={
            "event": "slack.ack",
            "kind": kind,
            "user": user_of(body) or None,
            "channel": channel_of(body),
            "status": status,
            "ack_ms": round(seconds * 1000, 1),
        },
    )


def build_web_app(
    app: AsyncApp | None, readiness: Readiness, *, signing_secret: str | None = None
) -> web.Application:
    """The aiohttp application. `app` None (Socket Mode): no /slack/events route.

    With an app, every POST to /slack/events must carry Slack's signature made with
    `signing_secret` (by default the app's own); there is no way to serve the route without it.
    """
    web_app = web.Application(client_max_size=MAX_BODY)

    async def healthz(request: web.Request) -> web.Response:
        del request
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        del request
        ok, checks = await readiness.check()
        if ok:
            return web.json_response({"status": "ok", "checks": checks})
        failed = [name for name, value in checks.items() if value != "ok"]
        return web.json_response(
            {"status": "unavailable", "failed": failed, "checks": checks}, status=503
        )

    async def prometheus(request: web.Request) -> web.Response:
        del request
        body, content_type = metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/metrics", prometheus)

    if app is not None:
        bolt = app
        # The app was built with the signing secret (bot.app.build_bot refuses to build an HTTP
        # app without one); Bolt keeps it privately, so it is read from there by default.
        secret = (
            signing_secret
            if signing_secret is not None
            else str(getattr(app, "_signing_secret", "") or "")
        )
        if not secret:
            raise ValueError("SLACK_SIGNING_SECRET is required to serve Slack requests over HTTP")

        async def slack_events(request: web.Request) -> web.StreamResponse:
            BUSY.enter()
            try:
                return await answer(request)
            finally:
                BUSY.leave()

        async def answer(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            raw = await request.read()
            if not signed_by_slack(
                secret,
                raw,
                request.headers.get("X-Slack-Request-Timestamp"),
                request.headers.get("X-Slack-Signature"),
                time.time(),
            ):
                record_ack({}, 401, time.perf_counter() - started)
                return _refused(401, "invalid request")
            try:
                received = bolt_request(
                    raw.decode("utf-8"),
                    request.query_string,
                    request.headers.get("Content-Type"),
                    request.headers,
                )
            except _UNREADABLE:  # signed, yet not a Slack payload: never from Slack itself
                log.warning("a signed request to /slack/events could not be read")
                return _refused(400, "unreadable request")
            bolt_response = await bolt.async_dispatch(received)
            body = received.body
            record_ack(body, bolt_response.status, time.perf_counter() - started)
            return await to_aiohttp_response(bolt_response)

        web_app.router.add_post("/slack/events", slack_events)
    return web_app
