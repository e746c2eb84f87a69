"""Approve, Reject, Cancel, expiry and the CSE outcomes, driven over signed HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from bot.core.requests import State
from bot.runtime import background
from tests.fakes.slack_api import text_of
from tests.slack_harness import (
    ALICE,
    APPROVALS,
    BOB,
    CAROL,
    CHANNEL,
    MALLORY,
    PROD_ID,
    Harness,
    running,
)


def _buttons(blocks: list[dict[str, object]]) -> list[str]:
    found = []
    for block in blocks:
        if block.get("type") == "actions":
            elements = block["elements"]
            assert isinstance(elements, list)
            found += [text_of(e["text"]) for e in elements if e.get("type") == "button"]
    return found


async def _approval(h: Harness, request_id: str) -> object:
    request = await h.store.get(request_id)
    assert request is not None and request.message_channel and request.message_ts
    return h.fake.message(request.message_channel, request.message_ts)


async def test_requester_cannot_approve_their_own_request() -> None:
    async with running() as h:
        request_id = await h.create_request()
        await h.driver.click(ALICE, "Approve", channel=CHANNEL)
        refused = await h.driver.wait_for_ephemeral(ALICE, "someone else must approve")
        assert refused.channel == CHANNEL
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.PENDING and not request.approvals
        assert h.cse.create_requests() == []


async def test_only_approvers_may_approve() -> None:
    async with running(approvers=(BOB,)) as h:
        request_id = await h.create_request()
        await h.driver.click(MALLORY, "Approve", channel=CHANNEL)
        refused = await h.driver.wait_for_ephemeral(MALLORY, "can approve")
        assert BOB in refused.all_text or BOB in json.dumps(refused.blocks)
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        assert len(h.cse.create_requests()) == 1


async def test_a_member_of_an_approver_group_may_approve() -> None:
    async with running(approvers=("S0OPSTEAM",)) as h:
        h.fake.add_usergroup("S0OPSTEAM", [CAROL])
        request_id = await h.create_request()
        await h.driver.click(MALLORY, "Approve", channel=CHANNEL)
        await h.driver.wait_for_ephemeral(MALLORY, "can approve")
        await h.driver.click(CAROL, "Approve", channel=CHANNEL)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.CREATED
        assert request.approved_by == (CAROL,)
        assert h.fake.calls_to("usergroups.users.list")


async def test_losers_of_the_race_hear_who_won() -> None:
    async with running() as h:
        request_id = await h.create_request()
        approval = await h.driver.wait_for_message("Approve", channel=CHANNEL)
        # Both click before either click's update reaches them.
        await asyncio.gather(
            h.driver.click(BOB, "Approve", message=approval),
            h.driver.click(CAROL, "Approve", message=approval),
        )
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED)
        [winner] = request.approved_by
        loser = CAROL if winner == BOB else BOB
        late = await h.driver.wait_for_ephemeral(loser, "already approved")
        assert winner in late.all_text or winner in json.dumps(late.blocks)
        assert len(h.cse.create_requests()) == 1


async def test_reject_with_a_reason() -> None:
    async with running() as h:
        request_id = await h.create_request()
        await h.driver.click(BOB, "Reject", channel=CHANNEL)
        view = await h.driver.wait_for_view(BOB)
        reason = next(b for b in view["blocks"] if b.get("type") == "input")
        assert "Reason" in text_of(reason["label"]) and reason.get("optional") is True
        await h.driver.submit_view(BOB, view, {"Reason": "wrong engine <@U0ALICE01>"})
        request = await h.wait_stored(request_id, lambda r: r.state is State.REJECTED)
        assert request.decided_by == BOB and request.decision_reason == "wrong engine <@U0ALICE01>"
        await h.fake.async_wait_for("chat.update")
        message = await _approval(h, request_id)
        assert _buttons(message.blocks) == []  # type: ignore[attr-defined]
        shown = json.dumps(message.blocks)  # type: ignore[attr-defined]
        assert "Rejected by" in shown and "wrong engine &lt;@U0ALICE01&gt;" in shown
        assert h.cse.create_requests() == []


async def test_reject_reason_is_required_when_configured() -> None:
    async with running(require_reason=True) as h:
        await h.create_request()
        await h.driver.click(BOB, "Reject", channel=CHANNEL)
        view = await h.driver.wait_for_view(BOB)
        reason = next(b for b in view["blocks"] if b.get("type") == "input")
        assert not reason.get("optional", False)


async def test_requester_cannot_reject_and_others_cannot_cancel() -> None:
    async with running() as h:
        request_id = await h.create_request()
        await h.driver.click(ALICE, "Reject", channel=CHANNEL)
        await h.driver.wait_for_ephemeral(ALICE, "use Cancel")
        await h.driver.click(BOB, "Cancel", channel=CHANNEL)
        await h.driver.wait_for_ephemeral(BOB, "can cancel it")
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
        await h.driver.click(ALICE, "Cancel", channel=CHANNEL)
        await h.wait_stored(request_id, lambda r: r.state is State.CANCELLED)
        await h.driver.wait_for_ephemeral(ALICE, "Cancelled by")
        await h.fake.async_wait_for("chat.update")
        message = await _approval(h, request_id)
        assert _buttons(message.blocks) == []  # type: ignore[attr-defined]
        assert h.cse.create_requests() == []


async def test_the_sweep_is_skipped_while_another_process_sweeps() -> None:
    async with running(approval_ttl=3600) as h:
        request_id = await h.create_request()
        h.clock.advance(timedelta(hours=1, seconds=1))
        elsewhere = True  # the follow-up worker runs, so it sweeps

        async def sweep_for(seconds: float) -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(
                background(h.flow, stop, interval=0.01, elsewhere=lambda: elsewhere)
            )
            await asyncio.sleep(seconds)
            stop.set()
            await task

        await sweep_for(0.1)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.PENDING
        elsewhere = False  # the worker is down: this process sweeps
        await sweep_for(0.1)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.EXPIRED


async def test_pending_requests_expire() -> None:
    async with running(approval_ttl=3600) as h:
        request_id = await h.create_request()
        assert await h.flow.sweep() == 0  # not yet due
        h.clock.advance(timedelta(hours=1, seconds=1))
        assert await h.flow.sweep() == 1
        assert await h.flow.sweep() == 0  # once only
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.EXPIRED
        await h.fake.async_wait_for("chat.update")
        message = await _approval(h, request_id)
        assert "Expired" in message.all_text  # type: ignore[attr-defined]
        assert _buttons(message.blocks) == []  # type: ignore[attr-defined]
        assert h.cse.create_requests() == []


async def test_cse_400_is_shown_and_can_be_resubmitted() -> None:
    async with running() as h:
        request_id = await h.create_request()
        h.cse.respond_next(
            400,
            {
                "error_code": "SVCSTG.00501134",
                "error_msg": "Invalid schedule",
                "detail": "cron <x>",
            },
        )
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        failure = await h.driver.wait_for_message("not created", channel=CHANNEL)
        shown = json.dumps(failure.blocks)
        assert "SVCSTG.00501134" in shown and "Invalid schedule" in shown
        assert "cron &lt;x&gt;" in shown
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.FAILED
        assert request.error is not None and request.error["status"] == 400
        assert len(h.cse.create_requests()) == 1

        await h.driver.click(ALICE, "Edit and resubmit", message=failure)
        form = await h.driver.wait_for_view(ALICE)
        schedule = next(b for b in form["blocks"] if b.get("block_id") == "schedule")
        assert schedule["element"]["initial_value"] == "0 2 * * *"
        await h.driver.submit_view(ALICE, form)
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and confirm["submit"]["text"] == "Request approval"


async def test_cse_500_fails_without_a_retry() -> None:
    async with running() as h:
        request_id = await h.create_request()
        h.cse.respond_next(500, {"errorCode": "CSE.5000", "errorMessage": "engine busy"})
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        failure = await h.driver.wait_for_message("not created", channel=CHANNEL)
        assert "CSE.5000" in failure.all_text and "engine busy" in failure.all_text
        assert "Edit and resubmit" in _buttons(failure.blocks)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.FAILED
        assert len(h.cse.create_requests()) == 1
        message = await _approval(h, request_id)
        assert "did not create" in message.all_text  # type: ignore[attr-defined]


async def test_a_lost_answer_leaves_the_outcome_unknown() -> None:
    async with running() as h:
        request_id = await h.create_request()
        h.cse.close_next()
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        unknown = await h.driver.wait_for_message("outcome unknown", channel=CHANNEL)
        assert "CSE console" in unknown.all_text
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.UNKNOWN
        assert len(h.cse.create_requests()) == 1


async def test_restart_between_request_and_approval() -> None:
    async with running() as h:
        request_id = await h.create_request()
        approval = await _approval(h, request_id)
        await h.restart()
        await h.driver.click(BOB, "Approve", message=approval)  # type: ignore[arg-type]
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.CREATED
        assert [r.path for r in h.cse.create_requests()] == [
            f"/cseengine/v1/engines/{PROD_ID}/backup-strategies"
        ]


async def test_two_of_three_approvals() -> None:
    async with running(required_approvals=2) as h:
        request_id = await h.create_request()
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        request = await h.wait_stored(request_id, lambda r: len(r.approvals) == 1)
        assert request.state is State.PENDING
        await h.fake.async_wait_for("chat.update")
        message = await _approval(h, request_id)
        assert "1 of 2" in message.all_text  # type: ignore[attr-defined]
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        await h.driver.wait_for_ephemeral(BOB, "already approved")
        assert h.cse.create_requests() == []
        await h.driver.click(CAROL, "Approve", channel=CHANNEL)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        request = await h.store.get(request_id)
        assert request is not None and request.approved_by == (BOB, CAROL)
        assert len(h.cse.create_requests()) == 1


async def test_approval_channel_with_a_status_message() -> None:
    async with running(approval_channel=APPROVALS) as h:
        request_id = await h.create_request()
        request = await h.wait_stored(request_id, lambda r: r.status_ts is not None)
        assert request.message_channel == APPROVALS and request.status_channel == CHANNEL
        status = h.fake.message(CHANNEL, request.status_ts or "")
        assert "Waiting for approval" in status.all_text
        await h.driver.click(BOB, "Approve", channel=APPROVALS)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED)
        await h.fake.async_wait_until(
            lambda: "created" in h.fake.message(CHANNEL, request.status_ts or "").all_text
        )


async def test_break_glass_self_approval_needs_a_reason_and_is_announced() -> None:
    async with running(break_glass_users=(ALICE,)) as h:
        request_id = await h.create_request()
        await h.driver.click(ALICE, "Approve", channel=CHANNEL)
        view = await h.driver.wait_for_view(ALICE)
        assert "Break glass" in view["title"]["text"]
        await h.driver.submit_view(ALICE, view, {"Reason": "prod is down, INC-9"})
        announcement = await h.driver.wait_for_message("Break glass", channel=CHANNEL)
        assert "prod is down, INC-9" in announcement.all_text
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.CREATED
        assert request.break_glass is not None


async def test_next_at_mismatch_warns_about_the_time_zone() -> None:
    async with running() as h:
        h.cse.next_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5, minutes=7)
        await h.create_request()
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        created = await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        assert "CSE_SCHEDULE_TIMEZONE" in created.all_text


async def test_no_warning_when_next_at_agrees() -> None:
    async with running() as h:
        await h.create_request()
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        created = await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        assert "CSE_SCHEDULE_TIMEZONE" not in created.all_text
        shown = created.all_text
        for field in ("Policy id", "Engine", "Schedule", "Retention days", "Max files"):
            assert field in shown
        assert "Created at" in shown and "Next backup" in shown


async def test_approvers_see_the_schedule_warnings_until_the_decision() -> None:
    async with running() as h:
        request_id = await h.create_request(
            'create engine=prod schedule="* 2 * * *" reserve=7 max_files=5 reason=INC-7'
        )
        approval = await _approval(h, request_id)
        assert "did you mean `0 2 * * *`" in text_of(approval)  # type: ignore[arg-type]
        await h.driver.click(BOB, "Approve", channel=CHANNEL)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED)

        def decided() -> bool:
            message = h.fake.message(request.message_channel, request.message_ts)
            return "Approved by" in text_of(message) and "did you mean" not in text_of(message)

        assert await h.fake.async_wait_until(decided, 5)
