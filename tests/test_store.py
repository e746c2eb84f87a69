"""The request store against a real Redis on 127.0.0.1:6379 and against the embedded store.

Every test that takes `store` runs twice: once on real Redis (unique prefix, keys deleted after)
and once on the in-process fakeredis store that runs when REDIS_URL is unset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from bot.core.requests import (
    BackupRequest,
    Draft,
    State,
    new_draft_id,
    new_request_id,
)
from bot.store import (
    Conflict,
    RequestNotFound,
    RequestStore,
    StoreUnavailable,
    TransitionRefused,
    open_store,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid4().hex[:8]}"


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain client on the real Redis, to look at what the store wrote."""
    client: aioredis.Redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


async def _drop(client: aioredis.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["redis", "embedded"])
async def store(
    request: pytest.FixtureRequest, prefix: str, raw: aioredis.Redis
) -> AsyncIterator[RequestStore]:
    s = open_store(REDIS_URL if request.param == "redis" else None, prefix)
    yield s
    await s.aclose()
    await _drop(raw, prefix)


@pytest.fixture
async def replicas(prefix: str, raw: aioredis.Redis) -> AsyncIterator[list[RequestStore]]:
    """Three independent stores (as three bot replicas) sharing one real Redis."""
    stores = [open_store(REDIS_URL, prefix) for _ in range(3)]
    yield stores
    for s in stores:
        await s.aclose()
    await _drop(raw, prefix)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def make_request(now: datetime | None = None, **changes: Any) -> BackupRequest:
    now = now or _now()
    fields: dict[str, Any] = {
        "id": new_request_id(),
        "requester": "UREQ",
        "channel": "CCHAN",
        "engine_id": "6f3c1e2a-0b1d-4c5e-9f00-123456789abc",
        "engine_name": "prod",
        "schedule": "0 2 * * *",
        "timezone": "Asia/Singapore",
        "reserve": 7,
        "max_files": 5,
        "reason": "INC-42",
        "created_at": now,
        "expires_at": now + timedelta(hours=4),
        "required_approvals": 1,
        "updated_at": now,
    }
    fields.update(changes)
    return BackupRequest(**fields)


# --- create, get, list -----------------------------------------------------------------------


async def test_create_then_get_returns_the_same_request(store: RequestStore) -> None:
    request = make_request(reason="INC-42 <@U999> & “quotes” ✓ / \\ 日本")
    await store.create(request)
    assert await store.get(request.id) == request
    assert await store.get(new_request_id()) is None


async def test_create_refuses_an_id_already_taken(store: RequestStore) -> None:
    first = make_request()
    await store.create(first)
    with pytest.raises(TransitionRefused) as refused:
        await store.create(make_request(id=first.id, requester="UOTHER"))
    assert refused.value.conflict is Conflict.EXISTS
    assert refused.value.current == first


async def test_a_request_with_no_time_to_wait_is_stored_and_already_due(
    store: RequestStore,
) -> None:
    now = _now()
    request = make_request(now, expires_at=now)
    await store.create(request)
    assert await store.get(request.id) == request
    assert await store.due_for_expiry(now) == [request.id]


async def test_create_refuses_a_request_that_is_not_new(store: RequestStore) -> None:
    with pytest.raises(ValueError, match="pending"):
        await store.create(make_request(state=State.APPROVED))


async def test_list_channel_is_newest_first_and_limited(store: RequestStore) -> None:
    base = _now()
    made = [make_request(base + timedelta(minutes=i)) for i in range(5)]
    elsewhere = make_request(base, channel="COTHER")
    for r in [*made, elsewhere]:
        await store.create(r)
    listed = await store.list_channel("CCHAN", limit=3)
    assert [r.id for r in listed] == [made[4].id, made[3].id, made[2].id]
    assert [r.id for r in await store.list_channel("COTHER")] == [elsewhere.id]
    assert await store.list_channel("CNOBODY") == []


async def test_index_entries_far_older_than_the_history_are_forgotten(store: RequestStore) -> None:
    now = _now()
    ancient = make_request(now - timedelta(days=91))
    recent = make_request(now - timedelta(days=29))
    await store.create(ancient)
    await store.create(recent)
    await store.create(newest := make_request(now))
    assert [r.id for r in await store.list_channel("CCHAN")] == [newest.id, recent.id]
    assert [r.id for r in await store.list_user("UREQ", 10)] == [newest.id, recent.id]


async def test_list_user_shows_only_that_users_requests(store: RequestStore) -> None:
    base = _now()
    mine = [make_request(base + timedelta(minutes=i), requester="UME") for i in range(2)]
    theirs = make_request(base, requester="UTHEM")
    for r in [*mine, theirs]:
        await store.create(r)
    assert [r.id for r in await store.list_user("UME", 10)] == [mine[1].id, mine[0].id]
    assert [r.id for r in await store.list_user("UTHEM", 10)] == [theirs.id]


async def test_list_pending_is_soonest_expiry_first_and_drops_decided(store: RequestStore) -> None:
    now = _now()
    late = make_request(now, expires_at=now + timedelta(hours=4))
    soon = make_request(now, expires_at=now + timedelta(minutes=30))
    decided = make_request(now)
    for r in (late, soon, decided):
        await store.create(r)
    await store.transition(decided.id, State.CANCELLED, "UREQ", now, expected=State.PENDING)
    assert [r.id for r in await store.list_pending(10)] == [soon.id, late.id]


# --- approve ---------------------------------------------------------------------------------


async def test_one_approval_claims_when_one_is_required(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    result = await store.approve(request.id, "UAPP", now + timedelta(minutes=1))
    assert result.claimed and result.recorded
    assert result.request.state is State.APPROVED
    assert result.request.decided_by == "UAPP"
    assert result.request.approved_by == ("UAPP",)
    assert result.request.version == request.version + 1
    assert await store.get(request.id) == result.request


async def test_two_approvals_are_needed_when_two_are_required(store: RequestStore) -> None:
    now = _now()
    request = make_request(now, required_approvals=2)
    await store.create(request)
    first = await store.approve(request.id, "UA", now)
    assert (first.claimed, first.request.state) == (False, State.PENDING)
    assert first.request.approvals_missing == 1
    second = await store.approve(request.id, "UB", now)
    assert (second.claimed, second.request.state) == (True, State.APPROVED)
    assert second.request.approved_by == ("UA", "UB")
    assert second.request.decided_by == "UB"


async def test_the_same_user_cannot_approve_twice(store: RequestStore) -> None:
    now = _now()
    request = make_request(now, required_approvals=2)
    await store.create(request)
    await store.approve(request.id, "UA", now)
    with pytest.raises(TransitionRefused) as refused:
        await store.approve(request.id, "UA", now)
    assert refused.value.conflict is Conflict.ALREADY_APPROVED
    assert refused.value.current.approved_by == ("UA",)
    assert refused.value.current.state is State.PENDING


async def test_the_requester_cannot_approve_without_break_glass(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    for reason in (None, "", "   "):
        with pytest.raises(TransitionRefused) as refused:
            await store.approve(request.id, "UREQ", now, break_glass_reason=reason)
        assert refused.value.conflict is Conflict.SELF_APPROVAL
    assert (await store.get(request.id)) == request


async def test_break_glass_approval_completes_on_its_own(store: RequestStore) -> None:
    now = _now()
    request = make_request(now, required_approvals=2)
    await store.create(request)
    result = await store.approve(request.id, "UREQ", now, break_glass_reason="prod is down")
    assert result.claimed
    assert result.request.state is State.APPROVED
    glass = result.request.break_glass
    assert glass is not None and glass.break_glass_reason == "prod is down"
    trail = await store.audit(request.id)
    assert trail[-1].note == "break glass: prod is down"


async def test_approval_after_the_deadline_is_refused(store: RequestStore) -> None:
    now = _now()
    request = make_request(now, expires_at=now + timedelta(minutes=5))
    await store.create(request)
    with pytest.raises(TransitionRefused) as refused:
        await store.approve(request.id, "UA", now + timedelta(minutes=5))
    assert refused.value.conflict is Conflict.EXPIRED
    assert refused.value.current.state is State.PENDING


async def test_approving_a_missing_request_says_not_found(store: RequestStore) -> None:
    with pytest.raises(RequestNotFound):
        await store.approve(new_request_id(), "UA", _now())


@pytest.mark.parametrize("required", [1, 2])
async def test_fifty_concurrent_approvals_claim_exactly_once(
    store: RequestStore, required: int
) -> None:
    now = _now()
    request = make_request(now, required_approvals=required)
    await store.create(request)
    users = [f"UAPP{i}" for i in range(10)]

    async def click(user: str) -> bool | None:
        try:
            return (await store.approve(request.id, user, now)).claimed
        except TransitionRefused:
            return None

    outcomes = await asyncio.gather(*(click(users[i % len(users)]) for i in range(50)))
    assert outcomes.count(True) == 1
    assert outcomes.count(False) == required - 1
    final = await store.get(request.id)
    assert final is not None and final.state is State.APPROVED
    assert len(final.approvals) == required
    assert len(set(final.approved_by)) == required
    to_approved = [e for e in await store.audit(request.id) if e.to_state is State.APPROVED]
    assert len(to_approved) == 1


@pytest.mark.parametrize("required", [1, 2])
async def test_replicas_sharing_redis_claim_exactly_once(
    replicas: list[RequestStore], required: int
) -> None:
    now = _now()
    request = make_request(now, required_approvals=required)
    await replicas[0].create(request)

    async def click(i: int) -> bool | None:
        try:
            result = await replicas[i % 3].approve(request.id, f"UAPP{i % 7}", now)
        except TransitionRefused:
            return None
        return result.claimed

    outcomes = await asyncio.gather(*(click(i) for i in range(50)))
    assert outcomes.count(True) == 1
    final = await replicas[2].get(request.id)
    assert final is not None and len(final.approvals) == required


# --- transitions -----------------------------------------------------------------------------


async def test_reject_after_approve_is_refused(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    await store.approve(request.id, "UA", now)
    with pytest.raises(TransitionRefused) as refused:
        await store.transition(request.id, State.REJECTED, "UB", now, expected=State.PENDING)
    assert refused.value.conflict is Conflict.STATE
    assert refused.value.current.state is State.APPROVED
    assert refused.value.current.decided_by == "UA"


async def test_cancel_after_expiry_is_refused(store: RequestStore) -> None:
    now = _now()
    request = make_request(now, expires_at=now + timedelta(minutes=1))
    await store.create(request)
    later = now + timedelta(minutes=2)
    expired = await store.transition(request.id, State.EXPIRED, "expiry", later, expected="pending")
    assert expired.state is State.EXPIRED
    with pytest.raises(TransitionRefused) as refused:
        await store.transition(request.id, State.CANCELLED, "UREQ", later, expected=State.PENDING)
    assert refused.value.current.state is State.EXPIRED


async def test_expiry_before_the_deadline_is_refused(store: RequestStore) -> None:
    now = _now()
    request = make_request(now, expires_at=now + timedelta(minutes=10))
    await store.create(request)
    with pytest.raises(TransitionRefused) as refused:
        await store.transition(request.id, State.EXPIRED, "expiry", now, expected=State.PENDING)
    assert refused.value.conflict is Conflict.NOT_DUE
    assert (await store.get(request.id)) == request


async def test_a_transition_outside_the_state_machine_is_a_programming_error(
    store: RequestStore,
) -> None:
    request = make_request()
    await store.create(request)
    with pytest.raises(ValueError, match="no transition"):
        await store.transition(request.id, State.CREATED, "UA", _now(), expected=State.PENDING)


async def test_created_after_approval_keeps_the_policy(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    await store.approve(request.id, "UA", now)
    policy = {
        "id": "pol-1",
        "engine_id": request.engine_id,
        "schedule": "0 2 * * *",
        "reserve": 7,
        "max_files": 5,
        "created_at": "2024-05-01T02:00:00+00:00",
        "next_at": "2024-05-02T02:00:00+00:00",
    }
    done = await store.transition(
        request.id,
        State.CREATED,
        "UA",
        now,
        expected=State.APPROVED,
        patch={"policy": policy, "message_ts": "1714530000.000100"},
    )
    assert done.state is State.CREATED
    assert done.policy == policy
    assert done.message_ts == "1714530000.000100"
    assert await store.get(request.id) == done
    with pytest.raises(TransitionRefused):
        await store.transition(request.id, State.FAILED, "UA", now, expected=State.APPROVED)


async def test_failed_keeps_the_cse_error(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    await store.approve(request.id, "UA", now)
    error = {
        "status": 400,
        "error_code": "SVCSTG.00500400",
        "error_msg": "invalid schedule",
        "detail": None,
        "kind": "cse",
    }
    failed = await store.transition(
        request.id, State.FAILED, "UA", now, expected={State.APPROVED}, patch={"error": error}
    )
    assert failed.error == error
    assert (await store.get(request.id)) == failed


async def test_reject_records_the_rejecter_and_the_reason(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    rejected = await store.transition(
        request.id,
        State.REJECTED,
        "UB",
        now,
        expected=State.PENDING,
        patch={"decision_reason": "use the weekly window"},
    )
    assert (rejected.decided_by, rejected.decision_reason) == ("UB", "use the weekly window")
    trail = await store.audit(request.id)
    assert (trail[-1].actor, trail[-1].note) == ("UB", "use the weekly window")


async def test_a_patch_may_not_touch_other_fields(store: RequestStore) -> None:
    request = make_request()
    await store.create(request)
    for patch in ({"state": "created"}, {"requester": "UX"}, {"reminders_sent": "many"}):
        with pytest.raises(ValueError, match="patch"):
            await store.update_fields(request.id, patch)
    assert (await store.get(request.id)) == request


async def test_concurrent_reject_and_cancel_only_one_wins(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)

    async def attempt(i: int) -> State | None:
        to = State.REJECTED if i % 2 else State.CANCELLED
        actor = f"UREJ{i}" if i % 2 else "UREQ"
        try:
            return (await store.transition(request.id, to, actor, now, expected="pending")).state
        except TransitionRefused:
            return None

    outcomes = await asyncio.gather(*(attempt(i) for i in range(20)))
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1
    final = await store.get(request.id)
    assert final is not None and final.state is winners[0]
    assert final.version == request.version + 1


async def test_update_fields_changes_only_what_is_given(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    updated = await store.update_fields(
        request.id,
        {"message_channel": "CAPPROVALS", "message_ts": "1.2", "reminders_sent": 1},
        now,
    )
    assert (updated.message_channel, updated.message_ts, updated.reminders_sent) == (
        "CAPPROVALS",
        "1.2",
        1,
    )
    # Everything else unchanged (and the empty approvals survive Lua's cjson).
    assert (
        updated.model_copy(
            update={
                "message_channel": None,
                "message_ts": None,
                "reminders_sent": 0,
                "version": request.version,
            }
        )
        == request
    )
    assert updated.version == request.version + 1
    assert updated.approvals == ()
    with pytest.raises(RequestNotFound):
        await store.update_fields(new_request_id(), {"status_ts": "1.3"})


# --- audit -----------------------------------------------------------------------------------


async def test_each_transition_leaves_one_audit_entry(store: RequestStore) -> None:
    now = _now()
    request = make_request(now, required_approvals=2)
    await store.create(request)
    await store.approve(request.id, "UA", now + timedelta(seconds=1))
    await store.approve(request.id, "UB", now + timedelta(seconds=2))
    await store.transition(
        request.id, State.UNKNOWN, "system", now + timedelta(seconds=3), expected=State.APPROVED
    )
    trail = await store.audit(request.id)
    assert [(e.actor, e.from_state, e.to_state) for e in trail] == [
        ("UREQ", None, State.PENDING),
        ("UA", State.PENDING, State.PENDING),
        ("UB", State.PENDING, State.APPROVED),
        ("system", State.APPROVED, State.UNKNOWN),
    ]
    assert trail[1].note == "approval 1 of 2"
    assert [e.at for e in trail] == [now + timedelta(seconds=i) for i in range(4)]
    assert all(e.request_id == request.id for e in trail)
    recent = await store.recent_audit(10)
    assert (recent[0].request_id, recent[0].to_state) == (request.id, State.UNKNOWN)
    assert len(recent) == 4


async def test_a_refused_change_leaves_no_audit_entry(store: RequestStore) -> None:
    now = _now()
    request = make_request(now)
    await store.create(request)
    await store.transition(request.id, State.CANCELLED, "UREQ", now, expected=State.PENDING)
    with pytest.raises(TransitionRefused):
        await store.approve(request.id, "UA", now)
    assert len(await store.audit(request.id)) == 2


# --- expiry and stuck requests ---------------------------------------------------------------


async def test_due_for_expiry_lists_only_pending_requests_past_their_deadline(
    store: RequestStore,
) -> None:
    now = _now()
    due = make_request(now, expires_at=now + timedelta(minutes=1))
    not_yet = make_request(now, expires_at=now + timedelta(hours=1))
    approved = make_request(now, expires_at=now + timedelta(minutes=1))
    for r in (due, not_yet, approved):
        await store.create(r)
    await store.approve(approved.id, "UA", now)
    assert await store.due_for_expiry(now) == []
    assert await store.due_for_expiry(now + timedelta(minutes=1)) == [due.id]
    await store.transition(
        due.id, State.EXPIRED, "expiry", now + timedelta(minutes=1), expected=State.PENDING
    )
    assert await store.due_for_expiry(now + timedelta(days=1)) == [not_yet.id]


async def test_stale_approved_finds_requests_stuck_between_claim_and_answer(
    store: RequestStore,
) -> None:
    now = _now()
    stuck, finished = make_request(now), make_request(now)
    for r in (stuck, finished):
        await store.create(r)
        await store.approve(r.id, "UA", now)
    await store.transition(finished.id, State.CREATED, "UA", now, expected=State.APPROVED)
    assert await store.stale_approved(now - timedelta(seconds=1)) == []
    found = await store.stale_approved(now + timedelta(minutes=5))
    assert [r.id for r in found] == [stuck.id]
    await store.transition(stuck.id, State.UNKNOWN, "expiry", now, expected=State.APPROVED)
    assert await store.stale_approved(now + timedelta(minutes=5)) == []


async def test_claim_once_is_granted_once(store: RequestStore) -> None:
    assert await store.claim_once("reminder:bkp-abcdef:1", 60)
    assert not await store.claim_once("reminder:bkp-abcdef:1", timedelta(minutes=1))
    assert await store.claim_once("reminder:bkp-abcdef:2", 60)


async def test_claim_once_across_replicas(replicas: list[RequestStore]) -> None:
    results = await asyncio.gather(*(replicas[i % 3].claim_once("expire:x", 60) for i in range(30)))
    assert results.count(True) == 1


# --- drafts ----------------------------------------------------------------------------------


def make_draft(**changes: Any) -> Draft:
    fields: dict[str, Any] = {
        "id": new_draft_id(),
        "user": "UREQ",
        "channel": "CCHAN",
        "engine_id": "eng-1",
        "engine_name": "prod",
        "schedule": "0 2 * * *",
        "reserve": 7,
        "max_files": None,
        "reason": "",
        "created_at": _now(),
    }
    fields.update(changes)
    return Draft(**fields)


async def test_drafts_round_trip_and_can_be_deleted(store: RequestStore) -> None:
    draft = make_draft()
    await store.save_draft(draft)
    assert await store.get_draft(draft.id) == draft
    await store.delete_draft(draft.id)
    assert await store.get_draft(draft.id) is None
    assert await store.get_draft(new_draft_id()) is None


# --- real Redis only: keys, TTLs, replicas ---------------------------------------------------


async def test_keys_live_under_the_prefix_with_ttls(
    replicas: list[RequestStore], raw: aioredis.Redis, prefix: str
) -> None:
    store = replicas[0]
    now = _now()
    draft = make_draft()
    await store.save_draft(draft, ttl=600)
    request = make_request(now, expires_at=now + timedelta(hours=4))
    await store.create(request)
    # Whatever the store wrote about this request (record, audit, indexes) is under the prefix.
    keys = [k async for k in raw.scan_iter(match=f"*{request.id}*", count=1000)]
    assert sorted(keys) == [f"{prefix}:audit:{request.id}", f"{prefix}:req:{request.id}"]
    indexes = {k async for k in raw.scan_iter(match=f"{prefix}:idx:*", count=1000)}
    assert indexes == {
        f"{prefix}:idx:channel:CCHAN",
        f"{prefix}:idx:user:UREQ",
        f"{prefix}:idx:pending",
    }
    assert 0 < await raw.ttl(f"{prefix}:draft:{draft.id}") <= 600
    history = 30 * 86400
    req_ttl = await raw.ttl(f"{prefix}:req:{request.id}")
    assert history + 4 * 3600 - 60 < req_ttl <= history + 4 * 3600
    assert 0 < await raw.ttl(f"{prefix}:audit:{request.id}") <= req_ttl
    await store.transition(request.id, State.CANCELLED, "UREQ", now, expected=State.PENDING)
    assert history - 60 < await raw.ttl(f"{prefix}:req:{request.id}") <= history
    assert history - 60 < await raw.ttl(f"{prefix}:audit:{request.id}") <= history


async def test_list_forgets_requests_whose_history_expired(
    replicas: list[RequestStore], raw: aioredis.Redis, prefix: str
) -> None:
    store = replicas[0]
    kept, gone = make_request(), make_request()
    for r in (kept, gone):
        await store.create(r)
    await raw.delete(f"{prefix}:req:{gone.id}")  # as its TTL would
    assert [r.id for r in await store.list_channel("CCHAN")] == [kept.id]
    assert await raw.zscore(f"{prefix}:idx:channel:CCHAN", gone.id) is None


async def test_a_second_replica_continues_a_pending_request(replicas: list[RequestStore]) -> None:
    now = _now()
    request = make_request(now, required_approvals=2)
    await replicas[0].create(request)
    await replicas[0].approve(request.id, "UA", now)
    await replicas[0].aclose()  # the first replica goes away
    result = await replicas[1].approve(request.id, "UB", now)
    assert result.claimed and result.request.approved_by == ("UA", "UB")


# --- Redis down, configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url", [CLOSED_PORT_URL, "rediss://127.0.0.1:1/0", "unix:///nonexistent/redis.sock"]
)
async def test_an_unreachable_redis_raises_store_unavailable(url: str) -> None:
    store = open_store(url, "test-down")
    now = _now()
    attempts = [
        store.ping(),
        store.get(new_request_id()),
        store.create(make_request(now)),
        store.approve(new_request_id(), "UA", now),
        store.transition(new_request_id(), State.CANCELLED, "UA", now, expected=State.PENDING),
        store.list_channel("CCHAN"),
        store.claim_once("x", 10),
        store.save_draft(make_draft()),
    ]
    for attempt in attempts:
        with pytest.raises(StoreUnavailable, match=r"The request store \(Redis\) is not answering"):
            await attempt
    await store.aclose()


async def test_a_redis_that_accepts_but_never_answers_raises_store_unavailable() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the connection open, answer nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = open_store(f"redis://127.0.0.1:{port}/0", "test-silent", socket_timeout=0.2)
    try:
        with pytest.raises(StoreUnavailable, match="not answering"):
            await store.approve(new_request_id(), "UA", _now())
        with pytest.raises(StoreUnavailable, match="not answering"):
            await store.ping()
    finally:
        await store.aclose()
        server.close()
        await server.wait_closed()


async def test_credentials_never_show_in_errors_logs_or_repr(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = open_store("redis://bot:hunter2-secret@127.0.0.1:1/0", "test-down")
    with pytest.raises(StoreUnavailable) as down:
        await store.ping()
    assert "hunter2" not in str(down.value)
    assert "hunter2" not in repr(store)
    assert "hunter2" not in caplog.text
    assert "127.0.0.1:1" in caplog.text
    await store.aclose()


async def test_the_embedded_store_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    store = open_store(None, "test-embedded")
    assert store.embedded
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("restart" in r.getMessage() and "replicas" in r.getMessage() for r in warnings)
    await store.ping()
    await store.aclose()
    real = open_store(REDIS_URL, "test-real")
    assert not real.embedded
    await real.aclose()


async def test_embedded_stores_do_not_share_data() -> None:
    a, b = open_store(None, "same"), open_store(None, "same")
    request = make_request()
    await a.create(request)
    assert await b.get(request.id) is None
    assert await a.get(request.id) == request
