"""Exactly once across replicas, Slack refusing or rate limiting, stuck calls, reminders, and the
"Something went wrong, reference <id>" path."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from bot.core.requests import State
from tests.slack_harness import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    REDIS_URL,
    approval_request_id,
    new_approval_message,
    running,
)

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'


async def test_concurrent_clicks_on_two_replicas_make_one_cse_call() -> None:
    async with running() as h:
        request_id = await h.create_request()
        _, other = await h.replica()
        approval = await new_approval_message(h.fake, CHANNEL, set())
        clicks = [
            driver.click(user, "Approve", message=approval)
            for _ in range(5)
            for driver in (h.driver, other)
            for user in (BOB, CAROL)
        ]
        responses = await asyncio.gather(*clicks)
        assert all(r.status_code == 200 for r in responses)
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        assert len(h.cse.create_requests()) == 1
        # Every click but the winner's is answered with an ephemeral refusal.
        answered = await h.fake.async_wait_until(
            lambda: len(h.fake.ephemerals(user=BOB)) + len(h.fake.ephemerals(user=CAROL)) >= 19
        )
        assert answered
        created = h.fake.messages(CHANNEL, containing="Backup policy created")
        assert len(created) == 1
        entries = await h.store.audit(request_id)
        assert [e.to_state for e in entries].count(State.CREATED) == 1
        assert [e.to_state for e in entries].count(State.APPROVED) == 1


async def test_not_in_channel_withdraws_the_request_and_says_what_to_do() -> None:
    async with running() as h:
        h.fake.not_in_channel.add(CHANNEL)
        await h.driver.command(ALICE, CHANNEL, QUICK)
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval")
        await h.driver.click(ALICE, "Request approval", message=confirmation)
        told = await h.driver.wait_for_ephemeral(ALICE, "invite me")
        assert "/invite" in told.all_text and "withdrawn" in told.all_text
        assert told.ts == confirmation.ts  # the confirmation itself now says so
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.CANCELLED


async def test_rate_limited_posts_are_retried() -> None:
    async with running() as h:
        h.fake.fail_next("chat.postMessage", status=429, retry_after=1)
        request_id = await h.create_request()
        assert request_id.startswith("bkp-")
        posts = h.fake.calls_to("chat.postMessage")
        assert [c.status for c in posts[:2]] == [429, 200]


async def test_an_approved_request_stuck_without_outcome_becomes_unknown() -> None:
    async with running() as h:
        request_id = await h.create_request()
        # A replica claimed it and died before CSE answered.
        result = await h.store.approve(request_id, BOB, h.clock())
        assert result.claimed
        assert await h.flow.sweep() == 0
        h.clock.advance(timedelta(minutes=6))
        assert await h.flow.sweep() == 1
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.UNKNOWN
        said = await h.driver.wait_for_message("outcome unknown", channel=CHANNEL)
        assert "CSE console" in said.all_text
        assert h.cse.create_requests() == []  # never retried


async def test_reminders_once_across_replicas_and_never_after_a_decision() -> None:
    async with running(approval_reminders=(1800, 7200), approvers=("S0OPSTEAM",)) as h:
        h.fake.add_usergroup("S0OPSTEAM", [BOB])
        request_id = await h.create_request()
        other, _ = await h.replica()
        assert await h.flow.send_reminders() == 0
        h.clock.advance(timedelta(minutes=31))
        sent = await asyncio.gather(h.flow.send_reminders(), other.services.flow.send_reminders())
        assert sorted(sent) == [0, 1]
        request = await h.store.get(request_id)
        assert request is not None and request.message_ts
        replies = [m for m in h.fake.messages(CHANNEL) if m.thread_ts == request.message_ts]
        assert len(replies) == 1
        assert "<!subteam^S0OPSTEAM>" in json.dumps(replies[0].blocks)
        assert await h.flow.send_reminders() == 0

        approval = await new_approval_message(h.fake, CHANNEL, set())
        assert approval_request_id(approval) == request_id
        await h.driver.click(BOB, "Approve", message=approval)
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED)
        h.clock.advance(timedelta(hours=2))
        assert await h.flow.send_reminders() == 0


async def test_unexpected_errors_get_a_reference(caplog: pytest.LogCaptureFixture) -> None:
    async with running() as h:
        request_id = await h.create_request()
        client = aioredis.from_url(REDIS_URL)
        try:
            key = f"{h.settings.redis_prefix}:req:{request_id}"
            await client.hset(key, "doc", '{"not": "a request"}')
        finally:
            await client.aclose()
        with caplog.at_level(logging.ERROR, logger="bot.slack.errors"):
            await h.driver.command(BOB, CHANNEL, f"status {request_id}")
            said = await h.driver.wait_for_ephemeral(BOB, "Something went wrong, reference")
        reference = said.all_text.split("reference", 1)[1].split()[0].strip("`.")
        assert len(reference) == 8
        assert any(getattr(r, "reference", None) == reference for r in caplog.records)


async def test_not_in_channel_from_the_modal_says_so_in_the_modal() -> None:
    async with running() as h:
        h.fake.not_in_channel.add(CHANNEL)
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        await h.driver.submit_view(ALICE, form, {"Engine": "prod", "Schedule (cron)": "0 2 * * *"})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None
        await h.driver.submit_view(ALICE, confirm)
        await h.fake.async_wait_for("views.update")
        shown = h.driver.current_view(ALICE)
        assert shown is not None and "invite me" in json.dumps(shown["blocks"])
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.CANCELLED
