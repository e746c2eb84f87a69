"""The request value, its ids and its state machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.core.requests import (
    ID_ALPHABET,
    REQUEST_ID,
    TERMINAL,
    TRANSITIONS,
    Approval,
    BackupRequest,
    Draft,
    State,
    can_transition,
    new_draft_id,
    new_request_id,
    normalise_request_id,
    request_from_draft,
    sources_of,
)

NOW = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def make_request(**changes: Any) -> BackupRequest:
    fields: dict[str, Any] = {
        "id": "bkp-7k3m9q",
        "requester": "UREQ",
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


# --- states ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "to", "allowed"),
    [
        (State.PENDING, State.APPROVED, True),
        (State.PENDING, State.REJECTED, True),
        (State.PENDING, State.CANCELLED, True),
        (State.PENDING, State.EXPIRED, True),
        (State.APPROVED, State.CREATED, True),
        (State.APPROVED, State.FAILED, True),
        (State.APPROVED, State.UNKNOWN, True),
        (State.PENDING, State.CREATED, False),
        (State.APPROVED, State.REJECTED, False),
        (State.APPROVED, State.PENDING, False),
        (State.EXPIRED, State.CANCELLED, False),
        (State.FAILED, State.APPROVED, False),
        (State.PENDING, State.PENDING, False),
    ],
    ids=lambda v: str(v),
)
def test_transitions(current: State, to: State, allowed: bool) -> None:
    assert can_transition(current, to) is allowed


def test_terminal_states_have_no_way_out() -> None:
    assert {
        State.CREATED,
        State.FAILED,
        State.UNKNOWN,
        State.REJECTED,
        State.CANCELLED,
        State.EXPIRED,
    } == TERMINAL
    for state in TERMINAL:
        assert not any(can_transition(state, to) for to in State)


@given(st.sampled_from(State), st.sampled_from(State))
def test_transitions_only_move_forward(current: State, to: State) -> None:
    if can_transition(current, to):
        assert current not in TERMINAL
        assert current in sources_of(to)
        # no path leads back
        assert not can_transition(to, current)


def test_sources_of() -> None:
    assert sources_of(State.APPROVED) == {State.PENDING}
    assert sources_of(State.UNKNOWN) == {State.APPROVED}
    assert sources_of(State.PENDING) == set()
    assert set(TRANSITIONS) == {State.PENDING, State.APPROVED}


# --- ids -------------------------------------------------------------------------------------


def test_new_ids_have_the_documented_shape() -> None:
    ids = {new_request_id() for _ in range(200)}
    assert len(ids) == 200
    for request_id in ids:
        assert REQUEST_ID.match(request_id)
        assert request_id.startswith("bkp-") and len(request_id) == 10
        assert not set(request_id[4:]) & set("01ilo")
    draft_id = new_draft_id()
    assert draft_id.startswith("drf-") and len(draft_id) == 14


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("bkp-7k3m9q", "bkp-7k3m9q"),
        ("BKP-7K3M9Q", "bkp-7k3m9q"),
        ("7k3m9q", "bkp-7k3m9q"),
        ("`bkp-7k3m9q`", "bkp-7k3m9q"),
        ("  bkp-7k3m9q \n", "bkp-7k3m9q"),
        ("bkp - 7k3m9q", "bkp-7k3m9q"),
        ("*bkp-7k3m9q*", "bkp-7k3m9q"),
        ("bkp-7k3m9", None),  # too short
        ("bkp-7k3m9qq", None),  # too long
        ("bkp-7k3m0q", None),  # 0 is never in an id
        ("bkp-7k3mlq", None),  # nor l
        ("drf-7k3m9q", None),
        ("", None),
        ("bkp-", None),
        ("bkp-7k3m9q; DROP", None),
    ],
    ids=repr,
)
def test_normalise_request_id(typed: str, expected: str | None) -> None:
    assert normalise_request_id(typed) == expected


@given(st.text(max_size=30))
def test_normalise_request_id_gives_a_valid_id_or_none(text: str) -> None:
    result = normalise_request_id(text)
    assert result is None or REQUEST_ID.match(result)


@given(st.text(alphabet=ID_ALPHABET, min_size=6, max_size=6), st.booleans(), st.booleans())
def test_every_id_survives_how_people_type_it(core: str, upper: bool, prefixed: bool) -> None:
    typed = ("bkp-" if prefixed else "") + core
    typed = typed.upper() if upper else typed
    assert normalise_request_id(f" `{typed}` ") == f"bkp-{core}"


# --- the request value -----------------------------------------------------------------------


def test_a_request_round_trips_through_json() -> None:
    request = make_request(
        reserve=7,
        max_files=5,
        reason="INC-42 <!here> & “quoted”",
        approvals=(
            Approval(user="UA", at=NOW),
            Approval(user="UB", at=NOW, break_glass_reason="x"),
        ),
        policy={"id": "p1", "next_at": "2024-05-02T02:00:00+00:00"},
        error=None,
    )
    assert BackupRequest.model_validate_json(request.model_dump_json()) == request


def test_an_empty_approvals_object_from_lua_reads_as_no_approvals() -> None:
    data = json.loads(make_request().model_dump_json())
    data["approvals"] = {}
    assert BackupRequest.model_validate(data).approvals == ()


def test_times_are_held_in_utc_and_naive_times_are_refused() -> None:
    singapore = timezone(timedelta(hours=8))
    request = make_request(created_at=datetime(2024, 5, 1, 17, 30, tzinfo=singapore))
    assert request.created_at == NOW
    assert request.created_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError):
        make_request(expires_at=datetime(2024, 5, 1, 12, 0))


@pytest.mark.parametrize("bad_id", ["bkp-7k3m0q", "7k3m9q", "bkp-7k3m9q:x", "BKP-7K3M9Q"])
def test_a_request_id_must_have_the_canonical_shape(bad_id: str) -> None:
    with pytest.raises(ValidationError):
        make_request(id=bad_id)


def test_requests_are_frozen_and_refuse_unknown_fields() -> None:
    request = make_request()
    with pytest.raises(ValidationError):
        request.state = State.APPROVED  # type: ignore[misc]
    with pytest.raises(ValidationError):
        make_request(colour="red")


def test_derived_views() -> None:
    request = make_request(required_approvals=2, approvals=(Approval(user="UA", at=NOW),))
    assert request.approved_by == ("UA",)
    assert request.approvals_missing == 1
    assert request.break_glass is None
    assert not request.terminal
    assert not request.is_expired(request.expires_at - timedelta(seconds=1))
    assert request.is_expired(request.expires_at)
    assert make_request(state=State.REJECTED).terminal
    assert make_request(state=State.APPROVED).approvals_missing == 0


def test_a_request_from_a_confirmed_draft() -> None:
    draft = Draft(
        id=new_draft_id(),
        user="UREQ",
        channel="CCHAN",
        engine_id="eng-1",
        engine_name="prod",
        schedule="0 2 * * *",
        reserve=7,
        max_files=None,
        reason="INC-42",
        created_at=NOW - timedelta(minutes=2),
    )
    request = request_from_draft(
        draft,
        now=NOW,
        ttl=timedelta(hours=4),
        required_approvals=2,
        timezone="Asia/Singapore",
    )
    assert REQUEST_ID.match(request.id)
    assert (request.requester, request.channel, request.engine_id) == ("UREQ", "CCHAN", "eng-1")
    assert (request.reserve, request.max_files, request.reason) == (7, None, "INC-42")
    assert request.state is State.PENDING
    assert (request.created_at, request.expires_at) == (NOW, NOW + timedelta(hours=4))
    assert (request.required_approvals, request.timezone) == (2, "Asia/Singapore")
    assert request.approvals == () and request.version == 0
