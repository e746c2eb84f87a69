"""The bot as Slack and CSE see it, for end-to-end tests of the Slack surface.

`start()` runs the real aiohttp web app (bot.web) on a free loopback port, over the real Bolt app
(bot.app), a real Redis (a unique key prefix, removed afterwards), a FakeSlack and a FakeCse. A
`SlackDriver` sends signed requests to it, as Slack would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from pydantic import SecretStr

from bot.app import Bot, build_bot
from bot.cse import CseClient
from bot.flow import BackupFlow
from bot.iam import StaticTokenProvider
from bot.settings import Settings
from bot.store import RequestStore, open_store
from bot.web import Readiness, build_web_app
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_driver import SlackDriver

REDIS_URL = "redis://127.0.0.1:6379/0"
BOT_TOKEN = "xoxb-test-bot-token-1234"
SIGNING_SECRET = "test-signing-secret-5678"
PROD_ID = "6f3c1e2a-0b1d-4c5e-9f00-123456789abc"
STAGING_ID = "0d9e4b7c-5a6f-4e3d-8c2b-abcdef012345"

ALICE = "U0ALICE01"  # asks
BOB = "U0BOB0002"  # approves
CAROL = "U0CAROL03"  # another approver
MALLORY = "U0MALLORY"  # not an approver
CHANNEL = "C0BACKUPS"
APPROVALS = "C0APPROVE"


@dataclass
class Clock:
    """The bot's clock: real time plus an offset a test can move forward (no sleeping)."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class Harness:
    fake: FakeSlack
    cse: FakeCse
    settings: Settings
    store: RequestStore
    cse_client: CseClient
    bot: Bot
    driver: SlackDriver
    runner: web.AppRunner
    clock: Clock
    url: str
    extra_runners: list[web.AppRunner] = field(default_factory=list)
    extra_stores: list[RequestStore] = field(default_factory=list)
    extra_bots: list[Bot] = field(default_factory=list)
    extra_drivers: list[SlackDriver] = field(default_factory=list)

    @property
    def flow(self) -> BackupFlow:
        return self.bot.services.flow

    async def restart(self) -> None:
        """A new process over the same Redis prefix: new store, app, web server and driver."""
        await self.runner.cleanup()
        await self.driver.aclose()
        await self.bot.aclose()
        await self.store.aclose()
        self.store = open_store(self.settings.redis_url, self.settings.redis_prefix)
        self.bot = build_bot(self.settings, store=self.store, cse=self.cse_client, clock=self.clock)
        self.runner, self.url = await serve(self.bot, self.store)
        self.driver = SlackDriver(self.url, SIGNING_SECRET, self.fake)

    async def replica(self) -> tuple[Bot, SlackDriver]:
        """A second bot over the same Redis prefix (another replica), with its own web server."""
        store = open_store(self.settings.redis_url, self.settings.redis_prefix)
        bot = build_bot(self.settings, store=store, cse=self.cse_client, clock=self.clock)
        runner, url = await serve(bot, store)
        self.extra_runners.append(runner)
        self.extra_bots.append(bot)
        self.extra_stores.append(store)
        driver = SlackDriver(url, SIGNING_SECRET, self.fake)
        self.extra_drivers.append(driver)
        return bot, driver

    async def create_request(
        self,
        text: str = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42',
        user: str = ALICE,
        channel: str = CHANNEL,
    ) -> str:
        """The quick path to a posted approval message; returns the request id."""
        where = self.settings.approval_channel or channel
        before = {m.ts for m in self.fake.messages(where)}
        await self.driver.command(user, channel, text)
        confirmation = await self.driver.wait_for_ephemeral(user, "Request approval")
        await self.driver.click(user, "Request approval", message=confirmation)
        message = await new_approval_message(self.fake, where, before)
        request_id = approval_request_id(message)
        await self.wait_stored(request_id, lambda r: r.message_ts is not None)
        return request_id

    async def wait_stored(self, request_id: str, predicate: Any, timeout: float = 5.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            request = await self.store.get(request_id)
            if request is not None and predicate(request):
                return request
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{request_id} never reached the expected state: {request}")
            await asyncio.sleep(0.02)


async def new_approval_message(fake: FakeSlack, channel: str, before: set[str]) -> Message:
    """The first approval message in `channel` posted after the messages `before` (by ts)."""

    def found() -> list[Message]:
        return [
            m
            for m in fake.messages(channel, containing="Waiting for approval")
            if m.ts not in before
        ]

    messages = await fake.async_wait_until(found)
    if not messages:
        raise AssertionError(f"no new approval message in {channel}")
    return messages[0]


def approval_request_id(message: Message) -> str:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if str(element.get("value", "")).startswith("bkp-"):
                return str(element["value"])
    raise AssertionError("no request id in the approval message")


async def serve(bot: Bot, store: RequestStore) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(build_web_app(bot.app, Readiness(store)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def make_settings(fake: FakeSlack, cse: FakeCse, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": SecretStr(BOT_TOKEN),
        "slack_signing_secret": SecretStr(SIGNING_SECRET),
        "slack_api_url": fake.url,
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "cse_endpoint": cse.url,
        "cse_auth_token": SecretStr(cse.static_token or "x"),
        "cse_engines": (("prod", PROD_ID), ("staging", STAGING_ID)),
        "approval_reminders": (),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Harness]:
    fake = FakeSlack(bot_token=BOT_TOKEN)
    for user, tz in ((ALICE, "Europe/Berlin"), (BOB, "UTC"), (CAROL, "UTC"), (MALLORY, "UTC")):
        fake.add_user(user, tz=tz)
    fake.start()
    cse = FakeCse().start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(fake, cse, prefix, **overrides)
    store = open_store(settings.redis_url, prefix)
    cse_client = CseClient(
        cse.url,
        StaticTokenProvider(SecretStr(cse.static_token or "x")),
        enterprise_project_id=settings.cse_enterprise_project_id,
        connect_timeout=2,
        timeout=5,
    )
    clock = Clock()
    bot = build_bot(settings, store=store, cse=cse_client, clock=clock)
    runner, url = await serve(bot, store)
    driver = SlackDriver(url, SIGNING_SECRET, fake)
    harness = Harness(fake, cse, settings, store, cse_client, bot, driver, runner, clock, url)
    try:
        yield harness
    finally:
        for runner in harness.extra_runners:
            await runner.cleanup()
        for extra_driver in harness.extra_drivers:
            await extra_driver.aclose()
        for extra_store in harness.extra_stores:
            await extra_store.aclose()
        for extra_bot in harness.extra_bots:
            await extra_bot.aclose()
        await harness.runner.cleanup()
        await harness.bot.aclose()
        await harness.driver.aclose()
        await harness.cse_client.aclose()
        await harness.store.aclose()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()


async def drop_prefix(prefix: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
