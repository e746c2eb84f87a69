"""Who may request, approve, reject and cancel: a table of plain-English cases, then properties."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.approval import (
    Decision,
    Policy,
    Refusal,
    decide_approve,
    decide_cancel,
    decide_create,
    decide_reject,
)
from bot.core.requests import Approval, BackupRequest, State
from bot.settings import load_settings

NOW = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
REQUESTER = "UREQ"
NOBODY: frozenset[str] = frozenset()


def make_request(**changes: Any) -> BackupRequest:
    fields: dict[str, Any] = {
        "id": "bkp-7k3m9q",
        "requester": REQUESTER,
        "channel": "CCHAN",
        "engine_id": "eng-1",
        "engine_name": "prod",
        "schedule": "0 2 * * *",
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=4),
        "updated_at": NOW,
    }
    fields.update(changes)
    return BackupRequest(**fields)


@dataclass(frozen=True)
class Case:
    policy: Policy = field(default_factory=Policy)
    request: BackupRequest = field(default_factory=make_request)
    user: str = "UAPP"
    groups: frozenset[str] = NOBODY
    now: datetime = NOW
    reason: str | None = None
    refusal: Refusal | None = None
    break_glass: bool = False
    says: str = ""  # a phrase the refusal message must contain


APPROVE_CASES: dict[str, Case] = {
    "anyone but the requester may approve when no approvers are set": Case(),
    "the requester may not approve their own request": Case(
        user=REQUESTER,
        refusal=Refusal.SELF_APPROVAL,
        says="You asked for this backup policy, so someone else must approve it.",
    ),
    "a listed approver may approve": Case(policy=Policy(approvers=frozenset({"UAPP"}))),
    "a member of an approver group may approve": Case(
        policy=Policy(approvers=frozenset({"S123"})), groups=frozenset({"S999", "S123"})
    ),
    "someone outside the approvers may not approve": Case(
        policy=Policy(approvers=frozenset({"S123", "U1"})),
        user="UOTHER",
        groups=frozenset({"S999"}),
        refusal=Refusal.NOT_APPROVER,
        says="Only members of <!subteam^S123> or <@U1> can approve.",
    ),
    "approvers listed only by user are named as users": Case(
        policy=Policy(approvers=frozenset({"U1", "U2"})),
        user="UOTHER",
        refusal=Refusal.NOT_APPROVER,
        says="Only <@U1> or <@U2> can approve.",
    ),
    "the requester who is an approver still may not approve their own request": Case(
        policy=Policy(approvers=frozenset({REQUESTER})),
        user=REQUESTER,
        refusal=Refusal.SELF_APPROVAL,
    ),
    "a break-glass user approves their own request with a reason": Case(
        policy=Policy(break_glass_users=frozenset({REQUESTER})),
        user=REQUESTER,
        reason="prod database is down",
        break_glass=True,
    ),
    "a break-glass user without a reason is asked for one": Case(
        policy=Policy(break_glass_users=frozenset({REQUESTER})),
        user=REQUESTER,
        reason="   ",
        refusal=Refusal.BREAK_GLASS_NEEDS_REASON,
        says="reason",
    ),
    "a break-glass user must still be an approver when approvers are set": Case(
        policy=Policy(approvers=frozenset({"S123"}), break_glass_users=frozenset({REQUESTER})),
        user=REQUESTER,
        reason="outage",
        refusal=Refusal.NOT_APPROVER,
    ),
    "a break-glass user approving someone else's request is an ordinary approval": Case(
        policy=Policy(break_glass_users=frozenset({"UAPP"})), reason="outage"
    ),
    "a request already approved cannot be approved again": Case(
        request=make_request(state=State.APPROVED, decided_by="UB"),
        refusal=Refusal.NOT_PENDING,
        says="already approved by <@UB>",
    ),
    "a created policy cannot be approved": Case(
        request=make_request(state=State.CREATED, decided_by="UB"), refusal=Refusal.NOT_PENDING
    ),
    "a rejected request cannot be approved": Case(
        request=make_request(state=State.REJECTED, decided_by="UB"),
        refusal=Refusal.NOT_PENDING,
        says="rejected by <@UB>",
    ),
    "a cancelled request cannot be approved": Case(
        request=make_request(state=State.CANCELLED, decided_by=REQUESTER),
        refusal=Refusal.NOT_PENDING,
        says="cancelled",
    ),
    "an expired request cannot be approved": Case(
        request=make_request(state=State.EXPIRED),
        refusal=Refusal.NOT_PENDING,
        says="expired",
    ),
    "a pending request past its deadline cannot be approved": Case(
        now=NOW + timedelta(hours=4), refusal=Refusal.EXPIRED, says="expired"
    ),
    "one second before the deadline is still in time": Case(
        now=NOW + timedelta(hours=4) - timedelta(seconds=1)
    ),
    "the same approver cannot approve twice": Case(
        request=make_request(required_approvals=2, approvals=(Approval(user="UAPP", at=NOW),)),
        refusal=Refusal.ALREADY_APPROVED_BY_YOU,
        says="1 more approval from others",
    ),
    "a second approver completes a two-approval request": Case(
        request=make_request(required_approvals=2, approvals=(Approval(user="UA", at=NOW),))
    ),
}


@pytest.mark.parametrize("case", APPROVE_CASES.values(), ids=APPROVE_CASES.keys())
def test_approve(case: Case) -> None:
    decision = decide_approve(
        case.policy, case.request, case.user, case.groups, case.now, case.reason
    )
    assert decision.allowed is (case.refusal is None)
    assert decision.refusal is case.refusal
    assert decision.break_glass is case.break_glass
    if case.refusal:
        assert case.says in decision.message
    else:
        assert decision.message == ""


REJECT_CASES: dict[str, Case] = {
    "anyone but the requester may reject when no approvers are set": Case(),
    "the requester cancels instead of rejecting": Case(
        user=REQUESTER, refusal=Refusal.SELF_REJECTION, says="Cancel"
    ),
    "an approver by group may reject": Case(
        policy=Policy(approvers=frozenset({"S123"})), groups=frozenset({"S123"})
    ),
    "someone outside the approvers may not reject": Case(
        policy=Policy(approvers=frozenset({"S123"})),
        user="UOTHER",
        refusal=Refusal.NOT_APPROVER,
        says="Only members of <!subteam^S123> can reject.",
    ),
    "an approved request cannot be rejected": Case(
        request=make_request(state=State.APPROVED, decided_by="UB"), refusal=Refusal.NOT_PENDING
    ),
    "a request past its deadline cannot be rejected": Case(
        now=NOW + timedelta(days=1), refusal=Refusal.EXPIRED
    ),
    "an approver who already approved may still reject before completion": Case(
        request=make_request(required_approvals=2, approvals=(Approval(user="UAPP", at=NOW),))
    ),
}


@pytest.mark.parametrize("case", REJECT_CASES.values(), ids=REJECT_CASES.keys())
def test_reject(case: Case) -> None:
    decision = decide_reject(case.policy, case.request, case.user, case.groups, case.now)
    assert decision.allowed is (case.refusal is None)
    assert decision.refusal is case.refusal
    assert not decision.break_glass
    assert case.says in decision.message


CANCEL_CASES: dict[str, Case] = {
    "the requester may cancel a pending request": Case(user=REQUESTER),
    "the requester may cancel even after its deadline passed": Case(
        user=REQUESTER, now=NOW + timedelta(days=1)
    ),
    "nobody else may cancel, not even an approver": Case(
        policy=Policy(approvers=frozenset({"UAPP"})),
        refusal=Refusal.NOT_REQUESTER,
        says="Only <@UREQ>",
    ),
    "an approved request cannot be cancelled": Case(
        user=REQUESTER,
        request=make_request(state=State.APPROVED, decided_by="UB"),
        refusal=Refusal.NOT_PENDING,
    ),
    "an expired request cannot be cancelled": Case(
        user=REQUESTER, request=make_request(state=State.EXPIRED), refusal=Refusal.NOT_PENDING
    ),
}


@pytest.mark.parametrize("case", CANCEL_CASES.values(), ids=CANCEL_CASES.keys())
def test_cancel(case: Case) -> None:
    decision = decide_cancel(case.policy, case.request, case.user)
    assert decision.allowed is (case.refusal is None)
    assert decision.refusal is case.refusal
    assert case.says in decision.message


@dataclass(frozen=True)
class CreateCase:
    policy: Policy
    user: str = "UREQ"
    groups: frozenset[str] = NOBODY
    channel: str = "CCHAN"
    refusal: Refusal | None = None
    says: str = ""


CREATE_CASES: dict[str, CreateCase] = {
    "anyone may request anywhere by default": CreateCase(Policy()),
    "a listed requester may request": CreateCase(Policy(requesters=frozenset({"UREQ"}))),
    "a member of a requester group may request": CreateCase(
        Policy(requesters=frozenset({"S1"})), groups=frozenset({"S1"})
    ),
    "someone outside the requesters may not request": CreateCase(
        Policy(requesters=frozenset({"S1"})),
        refusal=Refusal.NOT_REQUESTER_ALLOWED,
        says="Only members of <!subteam^S1> can request backup policies.",
    ),
    "the command works only in allowed channels": CreateCase(
        Policy(allowed_channels=frozenset({"CPROD", "GOPS"})),
        refusal=Refusal.CHANNEL_NOT_ALLOWED,
        says="<#CPROD> or <#GOPS>",
    ),
    "an allowed channel works": CreateCase(
        Policy(allowed_channels=frozenset({"CCHAN"})), channel="CCHAN"
    ),
    "the channel is checked before the requester": CreateCase(
        Policy(allowed_channels=frozenset({"CPROD"}), requesters=frozenset({"UX"})),
        refusal=Refusal.CHANNEL_NOT_ALLOWED,
    ),
}


@pytest.mark.parametrize("case", CREATE_CASES.values(), ids=CREATE_CASES.keys())
def test_create(case: CreateCase) -> None:
    decision = decide_create(case.policy, case.user, case.groups, case.channel)
    assert decision.allowed is (case.refusal is None)
    assert decision.refusal is case.refusal
    assert case.says in decision.message


def test_policy_from_settings() -> None:
    settings = load_settings(
        _env_file=None,
        approvers="U012AB3CD,S0614TZR7",
        requesters="S0614TZR8",
        allowed_channels="C0123ABCD",
        break_glass_users="W0456EFGH",
        required_approvals=2,
    )
    assert Policy.from_settings(settings) == Policy(
        approvers=frozenset({"U012AB3CD", "S0614TZR7"}),
        requesters=frozenset({"S0614TZR8"}),
        allowed_channels=frozenset({"C0123ABCD"}),
        break_glass_users=frozenset({"W0456EFGH"}),
        required_approvals=2,
    )


def test_messages_never_carry_user_typed_text() -> None:
    request = make_request(reason="<!channel> please", engine_name="<@UEVIL>")
    for decision in (
        decide_approve(Policy(), request, REQUESTER, NOBODY, NOW, None),
        decide_reject(Policy(), request, REQUESTER, NOBODY, NOW),
        decide_cancel(Policy(), request, "UOTHER"),
    ):
        assert "<!channel>" not in decision.message and "UEVIL" not in decision.message


# --- properties ------------------------------------------------------------------------------

USERS = st.sampled_from(["UREQ", "UA", "UB", "UC", "W1"])
GROUPS = st.frozensets(st.sampled_from(["S1", "S2", "S3"]), max_size=2)
PRINCIPALS = st.frozensets(st.sampled_from(["UREQ", "UA", "UB", "S1", "S2"]), max_size=3)
REASONS = st.one_of(st.none(), st.text(max_size=10))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    return Policy(
        approvers=draw(PRINCIPALS),
        requesters=draw(PRINCIPALS),
        allowed_channels=draw(st.frozensets(st.sampled_from(["C1", "C2"]), max_size=2)),
        break_glass_users=draw(st.frozensets(USERS, max_size=2)),
        required_approvals=draw(st.integers(1, 3)),
    )


@st.composite
def requests(draw: st.DrawFn) -> BackupRequest:
    approvers = draw(st.lists(st.sampled_from(["UA", "UB", "UC"]), unique=True, max_size=2))
    return make_request(
        state=draw(st.sampled_from(State)),
        required_approvals=draw(st.integers(1, 3)),
        approvals=tuple(Approval(user=u, at=NOW) for u in approvers),
        expires_at=NOW + timedelta(minutes=draw(st.integers(1, 600))),
    )


MOMENTS = st.integers(0, 700).map(lambda m: NOW + timedelta(minutes=m))


@given(policies(), requests(), GROUPS, MOMENTS, REASONS)
def test_the_requester_never_approves_without_break_glass(
    policy: Policy,
    request: BackupRequest,
    groups: frozenset[str],
    now: datetime,
    reason: str | None,
) -> None:
    decision = decide_approve(policy, request, REQUESTER, groups, now, reason)
    if decision.allowed:
        assert REQUESTER in policy.break_glass_users
        assert reason is not None and reason.strip()
        assert decision.break_glass


@given(policies(), requests(), USERS, GROUPS, MOMENTS, REASONS)
def test_only_a_pending_request_in_time_is_approvable(
    policy: Policy,
    request: BackupRequest,
    user: str,
    groups: frozenset[str],
    now: datetime,
    reason: str | None,
) -> None:
    decision = decide_approve(policy, request, user, groups, now, reason)
    if request.state is not State.PENDING:
        assert decision.refusal is Refusal.NOT_PENDING
    if decision.allowed:
        assert request.state is State.PENDING and now < request.expires_at


@given(policies(), requests(), USERS, GROUPS, MOMENTS, REASONS)
def test_an_allowed_approver_is_listed_and_new(
    policy: Policy,
    request: BackupRequest,
    user: str,
    groups: frozenset[str],
    now: datetime,
    reason: str | None,
) -> None:
    decision = decide_approve(policy, request, user, groups, now, reason)
    if decision.allowed:
        assert user not in request.approved_by
        if policy.approvers:
            assert user in policy.approvers or policy.approvers & groups


@given(policies(), requests(), USERS, GROUPS, MOMENTS, REASONS)
def test_every_refusal_explains_itself(
    policy: Policy,
    request: BackupRequest,
    user: str,
    groups: frozenset[str],
    now: datetime,
    reason: str | None,
) -> None:
    for decision in (
        decide_approve(policy, request, user, groups, now, reason),
        decide_reject(policy, request, user, groups, now),
        decide_cancel(policy, request, user),
        decide_create(policy, user, groups, "C1"),
    ):
        assert isinstance(decision, Decision)
        assert decision.allowed is (decision.refusal is None)
        assert bool(decision.message) is (not decision.allowed)


@given(policies(), requests(), USERS, GROUPS, MOMENTS)
def test_only_the_requester_cancels_and_never_rejects(
    policy: Policy, request: BackupRequest, user: str, groups: frozenset[str], now: datetime
) -> None:
    if decide_cancel(policy, request, user).allowed:
        assert user == REQUESTER and request.state is State.PENDING
    if decide_reject(policy, request, user, groups, now).allowed:
        assert user != REQUESTER and request.state is State.PENDING
