"""The authorisation matrix (CONTRACT §3, §4), through signed HTTP requests: who may create,
approve, reject and cancel, with approvers by user and by user group, break glass, allowed
channels and allowed requesters. A refused action changes nothing and is explained to the person
alone. Every decision is taken from the Slack user who acted (`body.user.id` / `user_id`),
never from anything else in the payload."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.core.requests import State
from bot.slack.ids import Action
from tests.fakes.slack_api import Message
from tests.procs import settled
from tests.slack_harness import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    MALLORY,
    Harness,
    approval_request_id,
    new_approval_message,
    running,
)

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

DAVE = "U0DAVE004"  # may request, may not approve
ERIN = "U0ERIN005"  # approver who may break glass on her own requests
GROUP = "S0OPSTEAM"  # CAROL is in it
ELSEWHERE = "C0ELSEWHR"

SETTINGS: dict[str, Any] = {
    "approvers": (BOB, GROUP, ERIN),
    "requesters": (ALICE, BOB, CAROL, DAVE, ERIN),
    "allowed_channels": (CHANNEL,),
    "break_glass_users": (ERIN,),
}
QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'


@dataclass(frozen=True)
class Role:
    actor: str
    requester: str = ALICE  # who asked for the request acted on
    channel: str = CHANNEL  # where a command is typed


ROLES = {
    "requester": Role(ALICE),
    "approver by user": Role(BOB),
    "approver by group": Role(CAROL),
    "non-approver": Role(DAVE),
    "break-glass user on her own request": Role(ERIN, requester=ERIN),
    "disallowed channel": Role(ALICE, channel=ELSEWHERE),
    "disallowed requester": Role(MALLORY),
}

# (role, action) -> None when allowed, else words the refusal contains.
ONLY_APPROVERS = "can approve"
MATRIX: dict[tuple[str, str], str | None] = {
    ("requester", "create"): None,
    ("requester", "approve"): "someone else must approve",
    ("requester", "reject"): "use Cancel",
    ("requester", "cancel"): None,
    ("approver by user", "create"): None,
    ("approver by user", "approve"): None,
    ("approver by user", "reject"): None,
    ("approver by user", "cancel"): "can cancel it",
    ("approver by group", "create"): None,
    ("approver by group", "approve"): None,
    ("approver by group", "reject"): None,
    ("approver by group", "cancel"): "can cancel it",
    ("non-approver", "create"): None,
    ("non-approver", "approve"): ONLY_APPROVERS,
    ("non-approver", "reject"): "can reject",
    ("non-approver", "cancel"): "can cancel it",
    ("break-glass user on her own request", "create"): None,
    ("break-glass user on her own request", "approve"): None,  # with a reason, announced
    ("break-glass user on her own request", "reject"): "use Cancel",
    ("break-glass user on her own request", "cancel"): None,
    ("disallowed channel", "create"): "only in",
    ("disallowed channel", "cancel"): "only in",  # `/cse-backup cancel` typed there
    ("disallowed requester", "create"): "can request",
    ("disallowed requester", "approve"): ONLY_APPROVERS,
    ("disallowed requester", "reject"): "can reject",
    ("disallowed requester", "cancel"): "can cancel it",
}


async def _harness_users(h: Harness) -> None:
    for user in (DAVE, ERIN):
        h.fake.add_user(user)
    h.fake.add_usergroup(GROUP, [CAROL])


async def _request(h: Harness, requester: str) -> tuple[str, Message]:
    before = {m.ts for m in h.fake.messages(CHANNEL)}
    await h.driver.command(requester, CHANNEL, QUICK)
    confirmation = await h.driver.wait_for_ephemeral(requester, "Request approval", timeout=WAIT)
    await h.driver.click(requester, "Request approval", message=confirmation)
    approval = await new_approval_message(h.fake, CHANNEL, before)
    request_id = approval_request_id(approval)
    await h.wait_stored(request_id, lambda r: r.message_ts is not None, timeout=WAIT)
    await settled(h.fake)
    return request_id, approval


async def _refused(h: Harness, user: str, words: str) -> None:
    told = await h.driver.wait_for_ephemeral(user, words, timeout=WAIT)
    assert told.user == user


async def _create(h: Harness, role: Role, refusal: str | None) -> None:
    await h.driver.command(role.actor, role.channel, QUICK)
    if refusal is not None:
        await _refused(h, role.actor, refusal)
        assert await h.store.list_channel(role.channel) == []
        assert h.fake.messages() == [] and h.fake.calls_to("views.open") == []
        return
    confirmation = await h.driver.wait_for_ephemeral(role.actor, "Request approval", timeout=WAIT)
    await h.driver.click(role.actor, "Request approval", message=confirmation)
    approval = await new_approval_message(h.fake, CHANNEL, set())
    request = await h.store.get(approval_request_id(approval))
    assert request is not None and request.requester == role.actor
    assert request.state is State.PENDING


async def _approve(h: Harness, role: Role, refusal: str | None) -> None:
    request_id, approval = await _request(h, role.requester)
    await h.driver.click(role.actor, "Approve", message=approval)
    if refusal is not None:
        await _refused(h, role.actor, refusal)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.PENDING and not request.approvals
        assert h.cse.create_requests() == []
        return
    if role.actor == role.requester:  # break glass: a reason first, then a loud announcement
        view = await h.driver.wait_for_view(role.actor, timeout=WAIT)
        assert "Break glass" in view["title"]["text"]
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
        await h.driver.submit_view(role.actor, view, {"Reason": "prod is down, INC-9"})
        announced = await h.driver.wait_for_message("Break glass", channel=CHANNEL, timeout=WAIT)
        assert "prod is down, INC-9" in announced.all_text and f"<@{ERIN}>" in announced.all_text
    request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
    assert request.approved_by == (role.actor,)
    assert len(h.cse.create_requests()) == 1


async def _reject(h: Harness, role: Role, refusal: str | None) -> None:
    request_id, approval = await _request(h, role.requester)
    await h.driver.click(role.actor, "Reject", message=approval)
    if refusal is not None:
        await _refused(h, role.actor, refusal)
        assert h.fake.calls_to("views.open") == []
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
        return
    view = await h.driver.wait_for_view(role.actor, timeout=WAIT)
    await h.driver.submit_view(role.actor, view, {"Reason": "not today"})
    request = await h.wait_stored(request_id, lambda r: r.state is State.REJECTED, timeout=WAIT)
    assert request.decided_by == role.actor
    assert h.cse.create_requests() == []


async def _cancel(h: Harness, role: Role, refusal: str | None) -> None:
    request_id, approval = await _request(h, role.requester)
    if role.channel != CHANNEL:  # typed in a channel where the command does not work
        await h.driver.command(role.actor, role.channel, f"cancel {request_id}")
    else:
        await h.driver.click(role.actor, "Cancel", message=approval)
    if refusal is not None:
        await _refused(h, role.actor, refusal)
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
        return
    request = await h.wait_stored(request_id, lambda r: r.state is State.CANCELLED, timeout=WAIT)
    assert request.decided_by == role.actor


ACTIONS = {"create": _create, "approve": _approve, "reject": _reject, "cancel": _cancel}


@pytest.mark.parametrize(("role", "action"), list(MATRIX))
async def test_authorisation_matrix(role: str, action: str) -> None:
    async with running(**SETTINGS) as h:
        await _harness_users(h)
        await ACTIONS[action](h, ROLES[role], MATRIX[(role, action)])


# --- break glass needs a reason, checked on the server ---------------------------------------


async def test_break_glass_without_a_reason_is_refused_on_the_server() -> None:
    async with running(**SETTINGS) as h:
        await _harness_users(h)
        request_id, approval = await _request(h, ERIN)
        await h.driver.click(ERIN, "Approve", message=approval)
        view = await h.driver.wait_for_view(ERIN, timeout=WAIT)
        # A client that ignores `required` and sends blanks.
        view["state"] = {
            "values": {"decision_reason": {"reason": {"type": "plain_text_input", "value": "   "}}}
        }
        response = await h.driver.send_interaction(
            {**h.driver._base("view_submission", ERIN), "view": view, "response_urls": []}
        )
        body = response.json()
        assert body["response_action"] == "errors" and "reason" in json.dumps(body).lower()
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.PENDING
        assert h.cse.create_requests() == []


# --- decisions come from body.user.id, never from the payload's other fields ------------------


def _click_payload(
    h: Harness, user: str, action: Action, request_id: str, approval: Message, claims: str
) -> dict[str, Any]:
    """A click by `user`, relayed and signed by Slack, whose other fields all claim `claims`."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": claims, "name": claims, "team_id": h.fake.team_id},
        "user_id": claims,
        "api_app_id": h.fake.app_id,
        "team": {"id": h.fake.team_id, "domain": h.fake.team_domain},
        "trigger_id": h.fake.issue_trigger_id(user),
        "channel": {"id": CHANNEL, "name": CHANNEL.lower()},
        "container": {
            "type": "message",
            "channel_id": CHANNEL,
            "message_ts": approval.ts,
            "user_id": claims,
        },
        "message": {**h.fake.message_payload(approval), "user": claims},
        "response_url": h.fake.issue_response_url(user, CHANNEL, ("message", CHANNEL, approval.ts)),
        "actions": [
            {
                "type": "button",
                "action_id": action.value,
                "block_id": "actions",
                "value": request_id,
                "user": claims,
                "action_ts": f"{time.time():.6f}",
            }
        ],
        "state": {"values": {}},
    }


async def test_a_payload_claiming_an_approver_does_not_make_one() -> None:
    async with running(**SETTINGS) as h:
        await _harness_users(h)
        request_id, approval = await _request(h, ALICE)
        forged = _click_payload(h, MALLORY, Action.APPROVE, request_id, approval, claims=BOB)
        assert (await h.driver.send_interaction(forged)).status_code == 200
        await _refused(h, MALLORY, ONLY_APPROVERS)
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.PENDING and not request.approvals
        assert h.cse.create_requests() == []

        # The other way round: Bob's click counts as Bob's, whatever else the payload says.
        genuine = _click_payload(h, BOB, Action.APPROVE, request_id, approval, claims=MALLORY)
        await h.driver.send_interaction(genuine)
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        assert request.approved_by == (BOB,)


async def test_a_payload_claiming_the_requester_cannot_cancel() -> None:
    async with running(**SETTINGS) as h:
        await _harness_users(h)
        request_id, approval = await _request(h, ALICE)
        forged = _click_payload(h, BOB, Action.CANCEL_REQUEST, request_id, approval, claims=ALICE)
        await h.driver.send_interaction(forged)
        await _refused(h, BOB, "can cancel it")
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]


async def test_a_payload_claiming_someone_else_cannot_self_approve() -> None:
    """The requester's own click, dressed up as Bob's, is still the requester's."""
    async with running(**SETTINGS) as h:
        await _harness_users(h)
        request_id, approval = await _request(h, ALICE)
        forged = _click_payload(h, ALICE, Action.APPROVE, request_id, approval, claims=BOB)
        await h.driver.send_interaction(forged)
        await _refused(h, ALICE, "someone else must approve")
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
        assert h.cse.create_requests() == []


async def test_a_command_claiming_another_user_acts_as_the_sender() -> None:
    async with running(**SETTINGS) as h:
        await _harness_users(h)
        request_id, _ = await _request(h, ALICE)
        fields = {
            "command": "/cse-backup",
            "text": f"cancel {request_id}",
            "user_id": MALLORY,
            "user_name": ALICE,
            "user": ALICE,
            "channel_id": CHANNEL,
            "team_id": h.fake.team_id,
            "response_url": h.fake.issue_response_url(MALLORY, CHANNEL),
            "trigger_id": h.fake.issue_trigger_id(MALLORY),
        }
        body = urlencode(fields)
        response = await h.driver.raw(
            body, {"Content-Type": "application/x-www-form-urlencoded", **h.driver.sign(body)}
        )
        assert response.status_code == 200
        if response.content.strip():  # an answer in the ack is shown to the sender, as by Slack
            h.fake.show_ack(fields["response_url"], response.json())
        await _refused(h, MALLORY, "can cancel it")
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]


async def test_a_reject_form_submitted_by_someone_else_is_refused() -> None:
    """Bob opens the reject form; a submission of that same form by Mallory is Mallory's."""
    async with running(**SETTINGS) as h:
        await _harness_users(h)
        request_id, approval = await _request(h, ALICE)
        await h.driver.click(BOB, "Reject", message=approval)
        view = await h.driver.wait_for_view(BOB, timeout=WAIT)
        view["state"] = {
            "values": {"decision_reason": {"reason": {"type": "plain_text_input", "value": "x"}}}
        }
        payload = {**h.driver._base("view_submission", MALLORY), "view": view, "response_urls": []}
        response = await h.driver.send_interaction(payload)
        assert "can reject" in response.text
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]
