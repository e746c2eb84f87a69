"""`cse-backup-bot run`: everything wired together, served until SIGTERM.

HTTP mode and Socket Mode both serve /healthz, /readyz and /metrics on PORT through aiohttp's
production runner; HTTP mode also serves POST /slack/events. A background task expires overdue
requests, marks stuck CSE calls unknown and sends reminders; it is safe on every replica at once.
With Redis, a follow-up worker process runs the work after each acknowledgement (bot.worker).
On SIGTERM the bot stops taking work, lets CSE calls and follow-ups under way finish (bounded,
the worker's too), and closes its clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot import metrics
from bot.app import Bot, build_bot
from bot.cse import CseClient
from bot.flow import BackupFlow
from bot.iam import TokenProvider, token_provider_from_settings
from bot.logs import configure_logging
from bot.settings import Settings
from bot.store import StoreUnavailable, open_store
from bot.web import BUSY, Readiness, build_web_app, record_ack
from bot.worker import FollowUpWorker

log = logging.getLogger("bot.runtime")

SWEEP_INTERVAL = 1.0
SHUTDOWN_GRACE = 5.0


class SocketHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, measuring and logging each acknowledgement as HTTP mode does,
    and remembering why the last connection attempt failed (for /readyz)."""

    def __init__(self, app: AsyncApp, app_token: str) -> None:
        super().__init__(app, app_token)
        self.connect_error: str | None = None
        issue = self.client.issue_new_wss_url

        async def issue_and_remember() -> str:
            try:
                url = await issue()
            except SlackApiError as exc:
                error = exc.response.get("error", "error")
                self.connect_error = f"apps.connections.open answered {error}"
                raise
            except Exception as exc:
                self.connect_error = f"Slack cannot be reached ({type(exc).__name__})"
                raise
            self.connect_error = None
            return url

        self.client.issue_new_wss_url = issue_and_remember  # type: ignore[method-assign]

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.perf_counter()
        BUSY.enter()
        try:
            bolt_response = await run_async_bolt_app(self.app, req)
            await send_async_response(client, req, bolt_response, time.time())
        finally:
            BUSY.leave()
        body = req.payload if isinstance(req.payload, dict) else {}
        record_ack(body, bolt_response.status, time.perf_counter() - started)


async def background(
    flow: BackupFlow,
    stop: asyncio.Event,
    interval: float = SWEEP_INTERVAL,
    elsewhere: Callable[[], bool] = lambda: False,
) -> None:
    """Expiry, stuck calls and reminders, every `interval` seconds until `stop`; skipped while
    `elsewhere()` says another process of this replica sweeps (the follow-up worker, which yields
    the CPU to acknowledgements)."""
    while not stop.is_set():
        try:
            if not elsewhere():
                await flow.sweep()
                await flow.send_reminders()
        except StoreUnavailable:
            metrics.REDIS_ERRORS.inc()
            log.warning("background sweep skipped: the request store is not answering")
        except Exception:
            log.exception("background sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def warm_up(tokens: TokenProvider) -> None:
    """Fetch the first service token now: the first Approve then does not wait for IAM, and with
    IAM_PROJECT_NAME the project id (for the engine list) is known from the start."""
    try:
        await tokens.token()
    except Exception as exc:  # reported, and tried again on the first CSE call
        log.warning("no CSE service token yet: %s", exc, extra={"event": "token.warm_up"})


def cse_client(settings: Settings, tokens: TokenProvider) -> CseClient:
    """The CSE client the settings describe (the serving process and the worker each have one)."""
    assert settings.cse_endpoint is not None  # require_for_run() checked it
    return CseClient(
        settings.cse_endpoint,
        tokens,
        enterprise_project_id=settings.cse_enterprise_project_id,
        connect_timeout=settings.cse_connect_timeout,
        timeout=settings.cse_timeout,
        on_call=metrics.observe_cse_call,
    )


async def serve(settings: Settings) -> None:
    configure_logging(settings)
    store = open_store(settings.redis_url, settings.redis_prefix)
    tokens = token_provider_from_settings(settings)
    cse = cse_client(settings, tokens)
    worker: FollowUpWorker | None = None
    if settings.follow_up_worker and settings.redis_url is not None:
        worker = FollowUpWorker(busy=BUSY)
        await worker.start()
    bot = build_bot(settings, store=store, cse=cse, tokens=tokens, sink=worker)
    flow = bot.services.flow

    handler: SocketHandler | None = None
    readiness = Readiness(store)
    if settings.socket_mode:
        assert settings.slack_app_token is not None
        handler = SocketHandler(bot.app, settings.slack_app_token.get_secret_value())
        readiness.socket_connected = handler.client.is_connected
        socket_handler = handler
        readiness.socket_problem = lambda: socket_handler.connect_error
    runner = web.AppRunner(
        build_web_app(None if handler else bot.app, readiness),
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE,
    )
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=settings.port).start()
    # Everything loaded so far (modules, the app, its clients) lives as long as the process: move
    # it out of the collector's generations, so a full collection while serving does not walk it
    # again (such walks stalled single requests by tens of ms at p95/p99 under load).
    gc.collect()
    gc.freeze()
    log.info(
        "cse-backup-bot serving on port %d (%s mode)",
        settings.port,
        "Socket" if handler else "HTTP",
        extra={"event": "start", "mode": "socket" if handler else "http", "port": settings.port},
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    # The follow-up worker sweeps while it runs; this process only when it is down.
    sweeper = asyncio.create_task(
        background(flow, stop, elsewhere=lambda: worker is not None and worker.running)
    )
    warming = asyncio.create_task(warm_up(tokens))
    # Connecting may take long (Slack down, a wrong app token: it retries every 10 s, and /readyz
    # says why); SIGTERM must not wait for it.
    connecting = (
        asyncio.create_task(handler.connect_async())  # type: ignore[no-untyped-call]
        if handler is not None
        else None
    )
    try:
        await stop.wait()
    finally:
        warming.cancel()
        if connecting is not None and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
        await shutdown(bot, handler, runner, readiness, sweeper, stop, worker)
        await bot.aclose()
        await cse.aclose()
        await tokens.aclose()
        await store.aclose()
        log.info("cse-backup-bot stopped", extra={"event": "stop"})


async def shutdown(
    bot: Bot,
    handler: AsyncSocketModeHandler | None,
    runner: web.AppRunner,
    readiness: Readiness,
    sweeper: asyncio.Task[None],
    stop: asyncio.Event,
    worker: FollowUpWorker | None = None,
) -> None:
    """Stop taking work, let CSE calls and follow-ups under way finish (bounded, here and in the
    worker), then stop serving."""
    stop.set()
    readiness.stopping = True
    flow = bot.services.flow
    flow.stop_accepting()
    log.info("shutting down: %d CSE call(s) under way", flow.in_flight, extra={"event": "shutdown"})
    if handler is not None:
        with contextlib.suppress(Exception):
            await handler.disconnect_async()  # type: ignore[no-untyped-call]
    grace = bot.services.settings.cse_timeout + SHUTDOWN_GRACE
    if worker is not None:  # end of its input: it finishes what it has, then exits
        await worker.stop(timeout=grace)
    await bot.followups.drain(timeout=grace)
    left = await flow.drain(timeout=grace)
    if left:
        log.error(
            "%d CSE call(s) did not finish before shutdown; the sweep of another replica (or "
            "the next start) marks them unknown",
            left,
        )
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await runner.cleanup()
    if handler is not None:
        with contextlib.suppress(Exception):
            await handler.close_async()  # type: ignore[no-untyped-call]
