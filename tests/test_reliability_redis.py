"""Redis faults (CONTRACT §5): a `redis-server` of the test's own is killed at the moment that
matters (the command arrives, the confirmation is submitted, Approve is clicked, the CSE call is
under way) and started again. People hear plainly that nothing was done, nothing is left
half-written, no request claims a success it did not have, and with persistence on every
pending request survives the restart and can still be approved."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.requests import State
from tests.procs import RedisServer, SlackGate, eventually
from tests.slack_harness import ALICE, BOB, CHANNEL, Harness, running

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'
GOOD = {"Engine": "prod", "Schedule (cron)": "0 2 * * *", "Retention days": "7", "Max files": "5"}
DOWN = "request store is not answering"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis with an append-only file fsynced on every write: a SIGKILL loses
    nothing, so a restart shows exactly what was written before the crash."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        yield server
    finally:
        server.close()


async def _pending_request(h: Harness) -> str:
    request_id = await h.create_request()
    request = await h.store.get(request_id)
    assert request is not None and request.state is State.PENDING
    return request_id


async def test_redis_down_when_the_command_arrives(redis_server: RedisServer) -> None:
    async with running(redis_url=redis_server.url) as h:
        redis_server.stop()
        await h.driver.command(ALICE, CHANNEL, QUICK)
        said = await h.driver.wait_for_ephemeral(ALICE, DOWN, timeout=WAIT)
        assert "nothing was saved" in said.all_text
        await h.driver.command(BOB, CHANNEL, "list")
        await h.driver.wait_for_ephemeral(BOB, DOWN, timeout=WAIT)
        assert h.fake.messages(CHANNEL) == []

        redis_server.start()
        await h.driver.command(ALICE, CHANNEL, QUICK)
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval", timeout=WAIT)
        await h.driver.click(ALICE, "Request approval", message=confirmation)
        await h.driver.wait_for_message("Waiting for approval", channel=CHANNEL, timeout=WAIT)
        assert len(await h.store.list_channel(CHANNEL)) == 1


async def test_redis_down_when_the_quick_path_confirmation_is_submitted(
    redis_server: RedisServer,
) -> None:
    async with running(redis_url=redis_server.url) as h:
        await h.driver.command(ALICE, CHANNEL, QUICK)
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval", timeout=WAIT)
        redis_server.stop()
        await h.driver.click(ALICE, "Request approval", message=confirmation)
        await h.driver.wait_for_ephemeral(ALICE, DOWN, timeout=WAIT)
        assert h.fake.messages(CHANNEL) == []

        # Back again: the same confirmation still works, and makes exactly one request.
        redis_server.start()
        assert await h.store.list_channel(CHANNEL) == []
        await h.driver.click(ALICE, "Request approval", message=confirmation)
        await h.driver.wait_for_message("Waiting for approval", channel=CHANNEL, timeout=WAIT)
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.PENDING
        await h.wait_stored(request.id, lambda r: r.message_ts is not None, timeout=WAIT)


async def test_redis_down_when_the_modal_confirmation_is_submitted(
    redis_server: RedisServer,
) -> None:
    async with running(redis_url=redis_server.url) as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE, timeout=WAIT)
        await h.driver.submit_view(ALICE, form, GOOD)
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and confirm["callback_id"] == "backup_confirm"
        redis_server.stop()
        response = await h.driver.submit_view(ALICE, confirm)
        body = response.json()
        assert body["response_action"] == "push"
        assert DOWN in json.dumps(body["view"])
        assert h.fake.messages(CHANNEL) == []

        redis_server.start()
        assert await h.store.list_channel(CHANNEL) == []
        await h.driver.close_view(ALICE, h.driver.current_view(ALICE) or "")
        again = h.driver.current_view(ALICE)
        assert again is not None and again["id"] == confirm["id"]
        await h.driver.submit_view(ALICE, again)
        await h.driver.wait_for_message("Waiting for approval", channel=CHANNEL, timeout=WAIT)
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.PENDING


async def _gated(h: Harness) -> SlackGate:
    """The bot again, now calling Slack through a gate the test can hold."""
    gate = await SlackGate(h.fake).start()
    h.settings = h.settings.model_copy(update={"slack_api_url": gate.url})
    await h.restart()
    return gate


async def test_redis_blinks_while_the_approval_message_is_posted(
    redis_server: RedisServer,
) -> None:
    """The request is stored, its approval message is on its way to Slack, and Redis goes
    away for a moment: where the message went is still noted, so it shows the outcome later."""
    async with running(redis_url=redis_server.url) as h:
        gate = await _gated(h)
        try:
            await h.driver.command(ALICE, CHANNEL, QUICK)
            confirmation = await h.driver.wait_for_ephemeral(
                ALICE, "Request approval", timeout=WAIT
            )
            gate.hold("chat.postMessage")
            await h.driver.click(ALICE, "Request approval", message=confirmation)
            await asyncio.wait_for(gate.held.wait(), WAIT)
            redis_server.stop()
            gate.release()
            await asyncio.sleep(1.0)  # the bot tries to note the message while Redis is away
            redis_server.start()
            [request] = await h.store.list_channel(CHANNEL)
            request = await h.wait_stored(
                request.id, lambda r: r.message_ts is not None, timeout=WAIT
            )
            await h.driver.wait_for_ephemeral(ALICE, "sent for approval", timeout=WAIT)
            await h.driver.click(
                BOB, "Approve", message=h.fake.message(CHANNEL, request.message_ts or "")
            )
            await h.wait_stored(request.id, lambda r: r.state is State.CREATED, timeout=WAIT)
            shown = await h.fake.async_wait_until(
                lambda: "created" in h.fake.message(CHANNEL, request.message_ts or "").all_text,
                timeout=WAIT,
            )
            assert shown
        finally:
            await gate.aclose()


async def test_redis_down_while_the_approval_message_is_posted(
    redis_server: RedisServer,
) -> None:
    """Redis stays away after the approval message went out: the requester is told exactly
    that (not "nothing was saved"), and the request can still be approved once Redis is back."""
    async with running(redis_url=redis_server.url) as h:
        gate = await _gated(h)
        try:
            await h.driver.command(ALICE, CHANNEL, QUICK)
            confirmation = await h.driver.wait_for_ephemeral(
                ALICE, "Request approval", timeout=WAIT
            )
            gate.hold("chat.postMessage")
            await h.driver.click(ALICE, "Request approval", message=confirmation)
            await asyncio.wait_for(gate.held.wait(), WAIT)
            redis_server.stop()
            gate.release()
            told = await h.driver.wait_for_ephemeral(ALICE, "was posted for approval", timeout=WAIT)
            assert "stopped answering" in told.all_text and "nothing was saved" not in told.all_text
            redis_server.start()
            [request] = await h.store.list_channel(CHANNEL)
            assert request.state is State.PENDING and request.message_ts is None
            approval = h.fake.find_message("Waiting for approval", channel=CHANNEL)
            await h.driver.click(BOB, "Approve", message=approval)
            await h.wait_stored(request.id, lambda r: r.state is State.CREATED, timeout=WAIT)
            assert len(h.cse.create_requests()) == 1
        finally:
            await gate.aclose()


async def test_redis_down_when_approve_is_clicked(redis_server: RedisServer) -> None:
    async with running(redis_url=redis_server.url) as h:
        request_id = await _pending_request(h)
        redis_server.stop()
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        said = await h.driver.wait_for_ephemeral(BOB, DOWN, timeout=WAIT)
        assert "created" not in said.all_text.lower()
        assert h.cse.create_requests() == []

        redis_server.start()
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.PENDING and not request.approvals
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL, timeout=WAIT)
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        assert len(h.cse.create_requests()) == 1


async def test_redis_blinks_between_the_claim_and_the_result(redis_server: RedisServer) -> None:
    """Redis goes away while CSE is creating the policy and comes back soon: the outcome is
    still recorded, once, and the single POST is never repeated."""
    async with running(redis_url=redis_server.url) as h:
        request_id = await _pending_request(h)
        h.cse.delay = 1.0
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        await eventually(lambda: len(h.cse.create_requests()) == 1)
        redis_server.stop()
        await asyncio.sleep(1.5)  # CSE answers while Redis is down
        redis_server.start()
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=15)
        assert request.policy is not None
        entries = await h.store.audit(request_id)
        assert [e.to_state for e in entries] == [State.PENDING, State.APPROVED, State.CREATED]
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL, timeout=WAIT)
        assert len(h.cse.create_requests()) == 1


async def test_redis_down_past_the_result_write(redis_server: RedisServer) -> None:
    """Redis stays away after CSE answered: people see CSE's outcome marked as not recorded
    (never as if it were), and once Redis is back the replica that made the call records it,
    the message is brought in line, and CSE still saw exactly one POST."""
    async with running(redis_url=redis_server.url) as h:
        request_id = await _pending_request(h)
        approval_ts = await _ts(h, request_id)
        h.cse.delay = 0.5
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        await eventually(lambda: len(h.cse.create_requests()) == 1)
        redis_server.stop()
        told = await h.driver.wait_for_message("Backup policy created", channel=CHANNEL, timeout=15)
        assert "could not be recorded" in told.all_text  # what CSE said, with the warning
        approval = h.fake.message(CHANNEL, approval_ts)
        assert "could not be recorded" in approval.all_text
        assert not any(b.get("type") == "actions" for b in approval.blocks)

        redis_server.start()
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=15)
        assert request.policy is not None and "unrecorded" not in request.policy
        entries = await h.store.audit(request_id)
        assert [e.to_state for e in entries] == [State.PENDING, State.APPROVED, State.CREATED]
        fixed = await h.fake.async_wait_until(
            lambda: (
                (m := h.fake.message(CHANNEL, approval_ts))
                and "could not be recorded" not in m.all_text
                and "created" in m.all_text
            ),
            timeout=WAIT,
        )
        assert fixed
        assert len(h.fake.messages(CHANNEL, containing="Backup policy created")) == 1
        assert len(h.cse.create_requests()) == 1


async def test_pending_requests_survive_a_redis_restart(redis_server: RedisServer) -> None:
    async with running(redis_url=redis_server.url) as h:
        first = await _pending_request(h)
        second = await _pending_request(h)
        first_ts, second_ts = await _ts(h, first), await _ts(h, second)
        redis_server.restart()  # SIGKILL, then start again on the same port and directory
        # The very first click after the restart works: no stale connection is reported as an
        # outage.
        await h.driver.click(BOB, "Approve", message=h.fake.message(CHANNEL, first_ts))
        await h.wait_stored(first, lambda r: r.state is State.CREATED, timeout=WAIT)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL, timeout=WAIT)
        assert h.fake.ephemerals(user=BOB, containing=DOWN) == []
        still = await h.store.get(second)
        assert still is not None and still.state is State.PENDING
        await h.restart()  # and a restart of the bot itself, over the restarted Redis
        await h.driver.command(BOB, CHANNEL, "list")
        listing = await h.driver.wait_for_ephemeral(BOB, second, timeout=WAIT)
        assert "Waiting for approval" in listing.all_text
        await h.driver.click(BOB, "Approve", message=h.fake.message(CHANNEL, second_ts))
        await h.wait_stored(second, lambda r: r.state is State.CREATED, timeout=WAIT)
        assert len(h.cse.create_requests()) == 2


async def _ts(h: Harness, request_id: str) -> str:
    request = await h.store.get(request_id)
    assert request is not None and request.message_ts is not None
    return request.message_ts
