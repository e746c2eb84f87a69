"""Exactly once under concurrency (CONTRACT §5): many clicks, two app instances or two real
processes over one Redis, and Approve racing Reject, Cancel and expiry. Whatever the order, one
transition out of `pending`, at most one CSE POST, and what Slack shows agrees with the store."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.requests import State, can_transition
from bot.store import RequestStore, open_store
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_driver import SlackDriver
from tests.procs import BotProcess, LatencyProxy, bot_env, free_port, start_bot
from tests.slack_harness import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CAROL,
    CHANNEL,
    REDIS_URL,
    SIGNING_SECRET,
    Harness,
    approval_request_id,
    drop_prefix,
    new_approval_message,
    running,
)

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'
CREATED = "Backup policy created"
SLOW = 0.1  # seconds each way between the bot and Redis while the clicks arrive
RACE = 0.05  # the same, while Approve races Reject, Cancel or expiry


def _mention_in(text: str) -> str | None:
    found = re.search(r"<@([UW][A-Z0-9]+)>", text)
    return found.group(1) if found else None


async def _approval_message(h: Harness, request_id: str) -> Message:
    request = await h.store.get(request_id)
    assert request is not None and request.message_channel and request.message_ts
    return h.fake.message(request.message_channel, request.message_ts)


async def _warm_up(fake: FakeSlack, drivers: Sequence[SlackDriver], request_id: str) -> None:
    """Concurrent `status` commands on every replica, so each holds enough open connections to
    Redis: the clicks then race at the store, not at opening connections."""
    before = len(fake.ephemerals(user=ALICE, containing="History"))
    await asyncio.gather(
        *(d.command(ALICE, CHANNEL, f"status {request_id}") for d in drivers for _ in range(12))
    )
    wanted = before + 12 * len(drivers)
    assert await fake.async_wait_until(
        lambda: len(fake.ephemerals(user=ALICE, containing="History")) >= wanted, timeout=10
    )


def _has_buttons(message: Message) -> bool:
    return any(b.get("type") == "actions" for b in message.blocks)


async def _one_decision(store: RequestStore, request_id: str) -> State:
    """The request left `pending` exactly once, with one audit entry, and its whole history is
    one path through the state machine; returns where it went from `pending`."""
    entries = await store.audit(request_id)
    states = [e.to_state for e in entries]
    assert states[0] is State.PENDING
    for entry, before in zip(entries[1:], states, strict=False):
        assert entry.from_state is before and can_transition(before, entry.to_state), states
    out_of_pending = [
        e for e in entries if e.from_state is State.PENDING and e.to_state != "pending"
    ]
    assert len(out_of_pending) == 1, [(e.from_state, e.to_state) for e in entries]
    global_entries = [
        e
        for e in await store.recent_audit(limit=1000)
        if e.request_id == request_id and e.from_state is State.PENDING
    ]
    assert len(global_entries) == 1
    return out_of_pending[0].to_state


@pytest.fixture
async def slow_redis() -> AsyncIterator[LatencyProxy]:
    """Redis behind a proxy; a test makes it slow (`delay`) while its clicks are under way, so
    that every click reads the request before any click has changed it."""
    proxy = await LatencyProxy(6379, delay=0).start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


async def test_twenty_clicks_from_two_approvers_on_two_app_instances(
    slow_redis: LatencyProxy,
) -> None:
    async with running(redis_url=slow_redis.url) as h:
        request_id = await h.create_request()
        _, other = await h.replica()
        approval = await _approval_message(h, request_id)
        drivers = (h.driver, other)
        clicks = [
            drivers[i % 2].click(
                (BOB, CAROL)[(i // 2) % 2], "Approve", message=approval, stale=True
            )
            for i in range(20)
        ]
        await _warm_up(h.fake, drivers, request_id)
        slow_redis.delay = SLOW
        responses = await asyncio.gather(*clicks)
        assert [r.status_code for r in responses] == [200] * 20

        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        slow_redis.delay = 0
        await h.driver.wait_for_message(CREATED, channel=CHANNEL, timeout=WAIT)
        assert len(h.cse.create_requests()) == 1
        assert await _one_decision(h.store, request_id) is State.APPROVED
        assert len(h.fake.messages(CHANNEL, containing=CREATED)) == 1

        # The 19 losers each hear, only to themselves, who won.
        [winner] = request.approved_by
        told = await h.fake.async_wait_until(
            lambda: (
                found
                if len(
                    found := [
                        e
                        for e in h.fake.ephemerals()
                        if e.user in (BOB, CAROL) and "already approved" in e.all_text
                    ]
                )
                >= 19
                else None
            ),
            timeout=WAIT,
        )
        assert told is not None and len(told) == 19
        assert {_mention_in(e.all_text) for e in told} == {winner}
        final = await _approval_message(h, request_id)
        assert not _has_buttons(final) and "created" in final.all_text


# --- two real processes ------------------------------------------------------------------------


@pytest.fixture
async def two_processes(
    tmp_path: Path, slow_redis: LatencyProxy
) -> AsyncIterator[tuple[FakeSlack, FakeCse, str, list[BotProcess]]]:
    fake = FakeSlack(bot_token=BOT_TOKEN)
    for user in (ALICE, BOB, CAROL):
        fake.add_user(user)
    fake.start()
    cse = FakeCse().start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    bots: list[BotProcess] = []
    try:
        for name in ("a", "b"):
            env = bot_env(fake, cse, redis_url=slow_redis.url, prefix=prefix, port=free_port())
            bots.append(await start_bot(env, tmp_path, name))
        yield fake, cse, prefix, bots
    finally:
        for bot in bots:
            bot.close()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()


async def test_twenty_clicks_on_two_real_processes_make_one_cse_post(
    two_processes: tuple[FakeSlack, FakeCse, str, list[BotProcess]],
    slow_redis: LatencyProxy,
) -> None:
    fake, cse, prefix, bots = two_processes
    store = open_store(REDIS_URL, prefix)
    drivers = [SlackDriver(bot.url, SIGNING_SECRET, fake) for bot in bots]
    try:
        await drivers[0].command(ALICE, CHANNEL, QUICK)
        confirmation = await drivers[0].wait_for_ephemeral(ALICE, "Request approval", timeout=WAIT)
        await drivers[1].click(ALICE, "Request approval", message=confirmation)
        approval = await new_approval_message(fake, CHANNEL, set())
        request_id = approval_request_id(approval)
        clicks = [
            drivers[i % 2].click(
                (BOB, CAROL)[(i // 2) % 2], "Approve", message=approval, stale=True
            )
            for i in range(20)
        ]
        await _warm_up(fake, drivers, request_id)
        slow_redis.delay = SLOW
        responses = await asyncio.gather(*clicks)
        assert [r.status_code for r in responses] == [200] * 20
        await drivers[0].wait_for_message(CREATED, channel=CHANNEL, timeout=10)
        slow_redis.delay = 0

        request = await store.get(request_id)
        assert request is not None and request.state is State.CREATED
        assert len(cse.create_requests()) == 1
        assert await _one_decision(store, request_id) is State.APPROVED
        told = await fake.async_wait_until(
            lambda: (
                found
                if len(found := fake.ephemerals(containing="already approved")) >= 19
                else None
            ),
            timeout=10,
        )
        assert told is not None and len(told) == 19
        [winner] = request.approved_by
        assert {_mention_in(e.all_text) for e in told} == {winner}
        assert len(fake.messages(CHANNEL, containing=CREATED)) == 1
        # Both processes did work: the clicks really were spread over two replicas.
        for bot in bots:
            assert '"event": "request.approve"' in bot.log_text()
    finally:
        for driver in drivers:
            await driver.aclose()
        await store.aclose()


# --- Approve racing Reject, Cancel and expiry ----------------------------------------------------


async def _consistent(h: Harness, request_id: str, posts_before: int) -> State:
    """Whoever won, the store, the CSE and the message agree."""
    final = await h.wait_stored(
        request_id, lambda r: r.state not in (State.PENDING, State.APPROVED), timeout=WAIT
    )
    decided = await _one_decision(h.store, request_id)
    posts = len(h.cse.create_requests()) - posts_before
    if decided is State.APPROVED:
        assert final.state is State.CREATED and posts == 1
    else:
        assert final.state is decided and posts == 0
    words = {
        State.CREATED: "created",
        State.REJECTED: "Rejected by",
        State.CANCELLED: "Cancelled by",
        State.EXPIRED: "Expired",
    }[final.state]
    shown = await h.fake.async_wait_until(
        lambda: (
            m
            if (m := h.fake.message(CHANNEL, final.message_ts or "")) and words in m.all_text
            else None
        ),
        timeout=WAIT,
    )
    assert shown is not None and not _has_buttons(shown)
    return final.state


async def test_approve_racing_reject(slow_redis: LatencyProxy) -> None:
    async with running(redis_url=slow_redis.url) as h:
        _, other = await h.replica()
        outcomes = []
        for _ in range(3):
            request_id = await h.create_request()
            posts = len(h.cse.create_requests())
            approval = await _approval_message(h, request_id)
            await h.driver.click(CAROL, "Reject", message=approval)
            view = await h.driver.wait_for_view(CAROL, timeout=WAIT)
            await _warm_up(h.fake, (h.driver, other), request_id)
            slow_redis.delay = RACE
            await asyncio.gather(
                other.submit_view(CAROL, view, {"Reason": "not now"}),
                *[
                    d.click(BOB, "Approve", message=approval, stale=True)
                    for d in (h.driver, other, h.driver, other)
                ],
            )
            outcomes.append(await _consistent(h, request_id, posts))
            slow_redis.delay = 0
        assert set(outcomes) <= {State.CREATED, State.REJECTED}


async def test_approve_racing_cancel(slow_redis: LatencyProxy) -> None:
    async with running(redis_url=slow_redis.url) as h:
        _, other = await h.replica()
        outcomes = []
        for _ in range(3):
            request_id = await h.create_request()
            posts = len(h.cse.create_requests())
            approval = await _approval_message(h, request_id)
            await _warm_up(h.fake, (h.driver, other), request_id)
            slow_redis.delay = RACE
            await asyncio.gather(
                h.driver.click(ALICE, "Cancel", message=approval, stale=True),
                other.command(ALICE, CHANNEL, f"cancel {request_id}"),
                *[
                    d.click(u, "Approve", message=approval, stale=True)
                    for d in (h.driver, other)
                    for u in (BOB, CAROL)
                ],
            )
            outcomes.append(await _consistent(h, request_id, posts))
            slow_redis.delay = 0
            created = h.fake.messages(CHANNEL, containing=CREATED)
            if outcomes[-1] is State.CANCELLED:
                assert not [m for m in created if request_id in m.all_text]
        assert set(outcomes) <= {State.CREATED, State.CANCELLED}


async def test_approve_racing_expiry_on_two_replicas(slow_redis: LatencyProxy) -> None:
    async with running(redis_url=slow_redis.url, approval_ttl=3600) as h:
        replica, other = await h.replica()
        outcomes = []
        # The deadline passes this long after the clicks leave: before, around and after the
        # moment the clicks reach the store.
        for ahead in (0.06, 0.15, 0.25):
            h.clock.offset = timedelta(0)
            request_id = await h.create_request()
            posts = len(h.cse.create_requests())
            request = await h.store.get(request_id)
            assert request is not None
            approval = await _approval_message(h, request_id)
            await _warm_up(h.fake, (h.driver, other), request_id)

            async def sweeps() -> None:
                for _ in range(3):
                    await asyncio.gather(h.flow.sweep(), replica.services.flow.sweep())

            slow_redis.delay = RACE
            h.clock.offset = request.expires_at - datetime.now(UTC) - timedelta(seconds=ahead)
            await asyncio.gather(
                sweeps(),
                *[
                    d.click(u, "Approve", message=approval, stale=True)
                    for d in (h.driver, other)
                    for u in (BOB, CAROL)
                ],
            )
            h.clock.offset += timedelta(seconds=1)
            await h.flow.sweep()
            outcomes.append(await _consistent(h, request_id, posts))
            slow_redis.delay = 0
        assert set(outcomes) <= {State.CREATED, State.EXPIRED}
