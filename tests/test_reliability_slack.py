"""Slack faults (CONTRACT §5): Slack refusing, failing or rate limiting the bot's calls never
leaves the store and Slack disagreeing, and the person is told what to do about it ("invite
me", "try again"). Rate limits are waited out (slack_sdk's retry handlers, honouring
Retry-After); `not_in_channel`, `channel_not_found`, an expired `trigger_id` each have their
own plain answer."""

from __future__ import annotations

from bot.core.requests import State
from tests.fakes.slack_api import Message
from tests.procs import settled
from tests.slack_harness import ALICE, APPROVALS, BOB, CAROL, CHANNEL, Harness, running

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'


async def _ask(h: Harness, channel: str = CHANNEL) -> str:
    """The quick path up to the click on Request approval; returns what Alice is told."""
    await h.driver.command(ALICE, channel, QUICK)
    confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval", timeout=WAIT)
    await h.driver.click(ALICE, "Request approval", message=confirmation)
    told = await h.fake.async_wait_until(
        lambda: (e := h.fake.ephemeral(confirmation.ts)) and "Request approval" not in e.all_text,
        timeout=WAIT,
    )
    assert told, "the confirmation was never replaced by an answer"
    return h.fake.ephemeral(confirmation.ts).all_text


async def _approval(h: Harness, request_id: str) -> Message:
    """The request's approval message, once the bot has finished posting (so a fault set next
    hits the call the test means, not a late one from before)."""
    await settled(h.fake)
    request = await h.store.get(request_id)
    assert request is not None and request.message_channel and request.message_ts
    return h.fake.message(request.message_channel, request.message_ts)


async def test_channel_not_found_withdraws_the_request_and_says_what_to_do() -> None:
    async with running() as h:
        h.fake.missing_channels.add(CHANNEL)
        said = await _ask(h)
        assert "channel_not_found" in said and "/invite" in said and "withdrawn" in said
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.CANCELLED and request.message_ts is None
        assert h.cse.create_requests() == []


async def test_not_in_the_approval_channel_names_that_channel() -> None:
    async with running(approval_channel=APPROVALS) as h:
        h.fake.not_in_channel.add(APPROVALS)
        said = await _ask(h)
        assert f"<#{APPROVALS}>" in said and "invite me" in said and "withdrawn" in said
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.CANCELLED
        assert h.fake.messages(APPROVALS) == [] and h.fake.messages(CHANNEL) == []


async def test_slack_failing_the_approval_post_withdraws_it() -> None:
    async with running() as h:
        h.fake.fail_next("chat.postMessage", "internal_error", status=500)
        said = await _ask(h)
        assert "try again" in said and "withdrawn" in said
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.CANCELLED
        # Slack is fine again: the next request goes through.
        request_id = await h.create_request()
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]


async def test_rate_limits_beyond_the_retries_withdraw_it_and_say_so() -> None:
    async with running() as h:
        h.fake.fail_next("chat.postMessage", status=429, retry_after=1, times=3)
        said = await _ask(h)
        assert "rate limiting" in said and "withdrawn" in said
        posts = h.fake.calls_to("chat.postMessage")
        assert [c.status for c in posts] == [429, 429, 429]  # waited out twice, then gave up
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.CANCELLED


async def test_a_rate_limited_update_is_waited_out() -> None:
    async with running() as h:
        request_id = await h.create_request()
        approval = await _approval(h, request_id)
        h.fake.fail_next("chat.update", status=429, retry_after=1, times=2)
        await h.driver.click(BOB, "Approve", message=approval)
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        shown = await h.fake.async_wait_until(
            lambda: (m := h.fake.message(CHANNEL, approval.ts)) and "created" in m.all_text,
            timeout=10,
        )
        assert shown
        updates = h.fake.calls_to("chat.update")
        assert [c.status for c in updates[:3]] == [429, 429, 200]
        assert len(h.cse.create_requests()) == 1


async def test_updates_refused_leave_the_store_right_and_clicks_harmless() -> None:
    async with running() as h:
        request_id = await h.create_request()
        approval = await _approval(h, request_id)
        h.fake.fail_next("chat.update", "internal_error", status=500, times=20)
        await h.driver.click(BOB, "Approve", message=approval)
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        result = await h.driver.wait_for_message(
            "Backup policy created", channel=CHANNEL, timeout=WAIT
        )
        assert "created" in result.all_text
        # The approval message still shows its buttons (Slack refused the update): a click on
        # it is answered from the store, and changes nothing.
        assert "Approve" in h.fake.message(CHANNEL, approval.ts).all_text
        await h.driver.click(CAROL, "Approve", message=approval)
        told = await h.driver.wait_for_ephemeral(CAROL, "already approved", timeout=WAIT)
        assert f"<@{BOB}>" in told.all_text
        assert len(h.cse.create_requests()) == 1


async def test_the_result_post_refused_still_shows_the_outcome_on_the_approval() -> None:
    async with running() as h:
        request_id = await h.create_request()
        approval = await _approval(h, request_id)
        h.fake.fail_next("chat.postMessage", "internal_error", status=500, times=5)
        await h.driver.click(BOB, "Approve", message=approval)
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        shown = await h.fake.async_wait_until(
            lambda: (m := h.fake.message(CHANNEL, approval.ts)) and "created" in m.all_text,
            timeout=WAIT,
        )
        assert shown
        policy_id = str((request.policy or {}).get("id"))
        assert policy_id in h.fake.message(CHANNEL, approval.ts).all_text
        assert len(h.cse.create_requests()) == 1


async def test_an_expired_trigger_id_is_explained_and_nothing_is_stored() -> None:
    async with running() as h:
        h.fake.fail_next("views.open", "expired_trigger_id")
        await h.driver.command(ALICE, CHANNEL, "create")
        told = await h.driver.wait_for_ephemeral(ALICE, "try again", timeout=WAIT)
        assert "3 seconds" in told.all_text
        assert await h.store.list_channel(CHANNEL) == []

        request_id = await h.create_request()
        approval = await _approval(h, request_id)
        h.fake.fail_next("views.open", "expired_trigger_id")
        await h.driver.click(BOB, "Reject", message=approval)
        await h.driver.wait_for_ephemeral(BOB, "try again", timeout=WAIT)
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
        await h.driver.click(BOB, "Reject", message=approval)  # a second try opens the form
        view = await h.driver.wait_for_view(BOB, timeout=WAIT)
        await h.driver.submit_view(BOB, view, {"Reason": "later"})
        await h.wait_stored(request_id, lambda r: r.state is State.REJECTED, timeout=WAIT)


async def test_a_failing_response_url_falls_back_to_an_ephemeral_post() -> None:
    async with running() as h:
        request_id = await h.create_request()
        approval = await _approval(h, request_id)
        h.fake.fail_next("response_url", "used_url", status=404)
        await h.driver.click(ALICE, "Approve", message=approval)
        told = await h.driver.wait_for_ephemeral(ALICE, "someone else must approve", timeout=WAIT)
        assert told.via == "chat.postEphemeral"
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]


async def test_slack_answering_nothing_useful_never_stops_the_cse_call() -> None:
    async with running() as h:
        request_id = await h.create_request()
        approval = await _approval(h, request_id)
        for method in ("chat.update", "chat.postMessage", "chat.postEphemeral", "response_url"):
            h.fake.fail_next(method, "internal_error", status=500, times=50)
        await h.driver.click(BOB, "Approve", message=approval)
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        assert request.policy is not None
        assert len(h.cse.create_requests()) == 1
        entries = await h.store.audit(request_id)
        assert [e.to_state for e in entries] == [State.PENDING, State.APPROVED, State.CREATED]
