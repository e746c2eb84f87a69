"""A crash between the claim and CSE's answer (CONTRACT §5): a real bot process is killed with
SIGKILL while the fake CSE holds its answer. The request is not lost and not retried: on the
next start, or by the sweep of a replica still running, it becomes `unknown` with a message
telling people to check the CSE console, and CSE saw exactly one POST."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.core.requests import State
from bot.store import RequestStore, open_store
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_driver import SlackDriver
from tests.procs import BotProcess, bot_env, eventually, free_port, start_bot
from tests.slack_harness import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CAROL,
    CHANNEL,
    REDIS_URL,
    SIGNING_SECRET,
    approval_request_id,
    drop_prefix,
    new_approval_message,
)

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'


@dataclass
class World:
    fake: FakeSlack
    cse: FakeCse
    prefix: str
    store: RequestStore
    workdir: Path
    bots: list[BotProcess]

    async def start(self, name: str) -> BotProcess:
        env = bot_env(
            self.fake,
            self.cse,
            redis_url=REDIS_URL,
            prefix=self.prefix,
            port=free_port(),
            CSE_TIMEOUT="120s",
        )
        bot = await start_bot(env, self.workdir, name)
        self.bots.append(bot)
        return bot


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    fake = FakeSlack(bot_token=BOT_TOKEN)
    for user in (ALICE, BOB, CAROL):
        fake.add_user(user)
    fake.start()
    cse = FakeCse().start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    store = open_store(REDIS_URL, prefix)
    w = World(fake, cse, prefix, store, tmp_path, [])
    try:
        yield w
    finally:
        for bot in w.bots:
            bot.close()
        await store.aclose()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()


async def _approve_and_kill_mid_call(w: World, bot: BotProcess) -> tuple[str, Message]:
    """Ask, approve through `bot`, and SIGKILL it while CSE is still working on the POST."""
    async with SlackDriver(bot.url, SIGNING_SECRET, w.fake) as driver:
        await driver.command(ALICE, CHANNEL, QUICK)
        confirmation = await driver.wait_for_ephemeral(ALICE, "Request approval", timeout=WAIT)
        await driver.click(ALICE, "Request approval", message=confirmation)
        approval = await new_approval_message(w.fake, CHANNEL, set())
        request_id = approval_request_id(approval)
        w.cse.delay = 60.0  # CSE received the POST and takes its time to answer
        await driver.click(BOB, "Approve", message=approval)
        await eventually(lambda: len(w.cse.create_requests()) == 1)
    bot.kill()
    request = await w.store.get(request_id)
    assert request is not None and request.state is State.APPROVED
    return request_id, approval


async def _marked_unknown(w: World, request_id: str, approval: Message) -> None:
    async def unknown() -> bool:
        request = await w.store.get(request_id)
        return request is not None and request.state is State.UNKNOWN

    await eventually(unknown, timeout=30, interval=0.2)
    request = await w.store.get(request_id)
    assert request is not None and request.error is not None
    assert request.error["error_code"] == "NO_OUTCOME"
    said = await w.fake.async_wait_until(
        lambda: w.fake.messages(CHANNEL, containing="outcome unknown"), timeout=10
    )
    assert said and "CSE console" in said[-1].all_text
    shown = await w.fake.async_wait_until(
        lambda: (m := w.fake.message(CHANNEL, approval.ts)) and "outcome is unknown" in m.all_text,
        timeout=WAIT,
    )
    assert shown
    assert not any(b.get("type") == "actions" for b in w.fake.message(CHANNEL, approval.ts).blocks)
    entries = await w.store.audit(request_id)
    assert [e.to_state for e in entries] == [State.PENDING, State.APPROVED, State.UNKNOWN]


async def _never_retried(w: World, bot: BotProcess, approval: Message) -> None:
    """More sweeps, a restart and a late click: still the one POST."""
    async with SlackDriver(bot.url, SIGNING_SECRET, w.fake) as driver:
        await driver.click(CAROL, "Approve", message=approval, stale=True)
        told = await driver.wait_for_ephemeral(CAROL, "already approved", timeout=WAIT)
        assert f"<@{BOB}>" in told.all_text
    await asyncio.sleep(2.5)  # a few more sweeps of the running bot
    assert len(w.cse.create_requests()) == 1


async def test_killed_mid_call_the_next_start_marks_it_unknown(world: World) -> None:
    first = await world.start("first")
    request_id, approval = await _approve_and_kill_mid_call(world, first)
    second = await world.start("second")  # the next start, over the same Redis
    await _marked_unknown(world, request_id, approval)
    await _never_retried(world, second, approval)


async def test_killed_mid_call_a_running_replica_marks_it_unknown(world: World) -> None:
    calling = await world.start("calling")
    survivor = await world.start("survivor")
    request_id, approval = await _approve_and_kill_mid_call(world, calling)
    # Until the lease lapses the survivor leaves the request alone (the caller might be alive).
    request = await world.store.get(request_id)
    assert request is not None and request.state is State.APPROVED
    await _marked_unknown(world, request_id, approval)
    await _never_retried(world, survivor, approval)
    assert "unknown" in survivor.log_text()
