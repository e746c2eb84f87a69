"""The baseline: a bare Bolt `AsyncApp` whose listeners only ack, served over aiohttp.

It is served the way bot/web.py and bot/runtime.py serve the bot in HTTP mode (an aiohttp
`web.Application` with the same body limit, `POST /slack/events` turned into a Bolt request with
`to_bolt_request`, dispatched, and turned back with `to_aiohttp_response`; `GET /healthz`; the
production `AppRunner` without access log), so the difference between the two is our code, not
the framework or the server. It has one slash command, and for the interactivity kinds the
benchmark sends (a view submission, a button click) one listener each, also ack-only: a Bolt app
without a listener answers those 404 through a different, slower path, which is no baseline.

Configuration, as for the bot: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_API_URL, PORT,
LOG_LEVEL. Run: `python -m bench.bare_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

ANY = re.compile(r".*")
MAX_BODY = 1024 * 1024  # as bot/web.py


def build_bare_app(token: str, signing_secret: str, api_url: str) -> AsyncApp:
    app = AsyncApp(
        token=token,
        signing_secret=signing_secret,
        client=AsyncWebClient(token=token, base_url=api_url),
    )

    @app.command(re.compile(r"^/.+"))
    async def on_command(ack: AsyncAck) -> None:
        await ack()

    @app.view(ANY)
    async def on_view(ack: AsyncAck) -> None:
        await ack()

    @app.action(ANY)
    async def on_action(ack: AsyncAck) -> None:
        await ack()

    return app


def build_web(app: AsyncApp) -> web.Application:
    async def events(request: web.Request) -> web.Response:
        bolt_response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    web_app = web.Application(client_max_size=MAX_BODY)
    web_app.router.add_post("/slack/events", events)
    web_app.router.add_get("/healthz", healthz)
    return web_app


async def serve(port: int, app: AsyncApp) -> None:
    runner = web.AppRunner(build_web(app), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING").upper())
    app = build_bare_app(
        os.environ["SLACK_BOT_TOKEN"],
        os.environ["SLACK_SIGNING_SECRET"],
        os.environ.get("SLACK_API_URL", "https://slack.com/api/"),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(os.environ.get("PORT", "3000")), app))


if __name__ == "__main__":
    main()
