"""The Bolt app, built by a function from the settings (never at import time)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.core.approval import Policy
from bot.cse import CseClient
from bot.flow import BackupFlow
from bot.iam import TokenProvider
from bot.settings import Settings
from bot.slack import errors
from bot.slack.directory import SlackDirectory
from bot.slack.engines import EngineCatalog
from bot.slack.followups import FollowUps, Sink, install
from bot.slack.home import AppHome
from bot.slack.listeners import register_listeners
from bot.slack.messages import Audience
from bot.slack.publisher import SlackPublisher
from bot.slack.reply import payload_kind
from bot.slack.services import Services
from bot.store import RequestStore

log = logging.getLogger("bot.app")

SLACK_TIMEOUT = 10
AUTH_RETRY_AFTER = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def web_client(
    settings: Settings, token: str | None, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """A Web API client on SLACK_API_URL that waits out rate limits and retries failed connects."""
    base_url = (
        settings.slack_api_url
        if settings.slack_api_url.endswith("/")
        else settings.slack_api_url + "/"
    )
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=SLACK_TIMEOUT,
        session=session,
        retry_handlers=[
            metrics.SlackApiErrors(),  # first: it must see every answer, retried or not
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


class BotAuthorization:
    """The single workspace's bot token. `auth.test` (for the bot's own user id) is asked once and
    cached; if Slack cannot answer it the bot still works with the token alone."""

    def __init__(self, client: AsyncWebClient, token: str) -> None:
        self._client = client
        self._token = token
        self._cached: dict[str, Any] | None = None
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _auth_test(self) -> dict[str, Any] | None:
        if self._cached is not None:
            return self._cached
        if time.monotonic() - self._failed_at < AUTH_RETRY_AFTER:
            return None
        async with self._lock:
            if self._cached is None:
                try:
                    async with asyncio.timeout(3):
                        response = await self._client.auth_test(token=self._token)
                    self._cached = dict(response.data) if isinstance(response.data, dict) else {}
                except (SlackApiError, TimeoutError, OSError) as exc:
                    self._failed_at = time.monotonic()
                    log.warning("auth.test failed (%s); carrying on with the bot token", exc)
        return self._cached

    async def authorize(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        found = await self._auth_test() or {}
        return AuthorizeResult(
            enterprise_id=enterprise_id or found.get("enterprise_id"),
            team_id=team_id or found.get("team_id"),
            team=found.get("team"),
            url=found.get("url"),
            bot_user_id=found.get("user_id"),
            bot_id=found.get("bot_id"),
            bot_token=self._token,
            user_id=user_id,
        )


def _session() -> aiohttp.ClientSession | None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT))


def _authorize_function(
    authorization: BotAuthorization,
) -> Callable[..., Awaitable[AuthorizeResult]]:
    # Bolt passes arguments by the names the function declares (a bound method's `self` would
    # confuse it), hence a plain function.
    async def authorize(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        return await authorization.authorize(enterprise_id, team_id, user_id)

    return authorize


class _Receive(AsyncMiddleware):
    """Counts each Slack request once (not again as a follow-up in the worker), and puts the
    App Home service in the context (the error handler answers a click made in the tab in the
    tab itself). A class, not a function middleware: Bolt then injects no arguments."""

    def __init__(self, home: AppHome) -> None:
        self._home = home

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        if not req.lazy_only:
            body = req.body if isinstance(req.body, dict) else {}
            metrics.INTERACTIONS.labels(payload_kind(body), "received").inc()
        req.context["home"] = self._home
        return await next()


@dataclass(frozen=True)
class Bot:
    """The Bolt app and what the runtime drives besides it (background sweeps, shutdown)."""

    app: AsyncApp
    services: Services
    followups: FollowUps
    session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        """Stop republishing Home tabs; close the HTTP connections to Slack shared by the app's
        clients."""
        await self.services.home.aclose()
        if self.session is not None and not self.session.closed:
            await self.session.close()


def build_bot(
    settings: Settings,
    *,
    store: RequestStore,
    cse: CseClient,
    tokens: TokenProvider | None = None,
    clock: Callable[[], datetime] = utc_now,
    sink: Sink | None = None,
    worker: bool = False,
) -> Bot:
    """The whole Slack surface over the given store and CSE client.

    HTTP mode verifies Slack's request signature (always: no setting switches it off); in Socket
    Mode there is no HTTP endpoint for Slack requests, so there is nothing to sign.

    Slack gets its answer as soon as a listener's ack function returns
    (`process_before_response`); the lazy functions go to `sink` (the follow-up worker) when
    given, else run here (bot.slack.followups). `worker` builds the app of the worker process
    itself: its only requests are follow-ups its parent verified, read from a local pipe.
    """
    if settings.slack_bot_token is None:
        raise ValueError("SLACK_BOT_TOKEN is required to build the app")
    token = settings.slack_bot_token.get_secret_value()
    signing_secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    )
    if not settings.socket_mode and not signing_secret and not worker:
        raise ValueError("SLACK_SIGNING_SECRET is required in HTTP mode")
    # One connection pool for every Slack call (slack_sdk opens a new one per call otherwise);
    # it can only be made inside a running event loop.
    session = _session()
    followups = FollowUps(logging.getLogger("bot.bolt"), sink)
    app = AsyncApp(
        name="cse-backup-bot",
        client=web_client(settings, None, session),
        signing_secret=signing_secret or "",
        request_verification_enabled=not settings.socket_mode and not worker,
        authorize=_authorize_function(
            BotAuthorization(web_client(settings, token, session), token)
        ),
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("bot.bolt"),
    )
    api = web_client(settings, token, session)
    groups = frozenset(p for p in (*settings.approvers, *settings.requesters) if p.startswith("S"))
    directory = SlackDirectory(api, groups)
    home = AppHome(api, store, Policy.from_settings(settings), directory.groups_of, clock)
    flow = BackupFlow(
        settings,
        store=store,
        cse=cse,
        announcer=SlackPublisher(api, Audience(settings.approvers), clock, on_change=home.changed),
        groups_of=directory.groups_of,
        clock=clock,
    )

    def project_id() -> str | None:
        return settings.project_id or (tokens.project_id if tokens is not None else None)

    catalog = EngineCatalog(settings.engines, lister=cse.list_engines, project_id=project_id)
    services = Services(
        settings=settings,
        flow=flow,
        catalog=catalog,
        directory=directory,
        clock=clock,
        home=home,
        followups=followups,
    )

    app.use(_Receive(home))
    errors.register(app)
    register_listeners(app, services)
    install(app, followups)  # last: it wraps the error handler registered above
    return Bot(app=app, services=services, followups=followups, session=session)


def build_app(
    settings: Settings,
    *,
    store: RequestStore,
    cse: CseClient,
    tokens: TokenProvider | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncApp:
    """The Bolt app alone (see build_bot for the app with its services)."""
    return build_bot(settings, store=store, cse=cse, tokens=tokens, clock=clock).app
