"""A backup-policy request and its state machine (CONTRACT §5). Pure: no I/O, no Slack.

A request is a frozen value. Only the store changes the stored record, atomically; everything
else reads a request, decides, and asks the store for a transition.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

# No 0/o, 1/i/l: a request id is read out loud and typed by hand during incidents.
ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
REQUEST_ID_PREFIX = "bkp-"
REQUEST_ID_LENGTH = 6
DRAFT_ID_PREFIX = "drf-"
DRAFT_ID_LENGTH = 10

REQUEST_ID = re.compile(rf"^{REQUEST_ID_PREFIX}[{ID_ALPHABET}]{{{REQUEST_ID_LENGTH}}}$")
DRAFT_ID = re.compile(rf"^{DRAFT_ID_PREFIX}[{ID_ALPHABET}]{{{DRAFT_ID_LENGTH}}}$")
_TYPED_ID = re.compile(rf"^(?:{REQUEST_ID_PREFIX})?([{ID_ALPHABET}]{{{REQUEST_ID_LENGTH}}})$")


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    CREATED = "created"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.APPROVED, State.REJECTED, State.CANCELLED, State.EXPIRED}),
    State.APPROVED: frozenset({State.CREATED, State.FAILED, State.UNKNOWN}),
}
TERMINAL: frozenset[State] = frozenset(State) - frozenset(TRANSITIONS)


def can_transition(current: State, to: State) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def sources_of(to: State) -> frozenset[State]:
    """The states from which `to` can be reached."""
    return frozenset(src for src, targets in TRANSITIONS.items() if to in targets)


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def new_request_id() -> str:
    """A fresh id such as `bkp-7k3m9q` (31^6, about 887 million; the store refuses a clash)."""
    return _random_id(REQUEST_ID_PREFIX, REQUEST_ID_LENGTH)


def new_draft_id() -> str:
    return _random_id(DRAFT_ID_PREFIX, DRAFT_ID_LENGTH)


def normalise_request_id(text: str) -> str | None:
    """`BKP-7K3M9Q`, `` `bkp-7k3m9q` ``, `7k3m9q`, `bkp 7k3m9q` -> `bkp-7k3m9q`; else None."""
    cleaned = re.sub(r"[\s`*_\"'“”‘’]", "", text).lower()
    match = _TYPED_ID.match(cleaned)
    if match is None:
        return None
    return REQUEST_ID_PREFIX + match.group(1)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Aware datetimes only (a naive time is refused), always held in UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _tuple_from_lua(value: Any) -> Any:
    # Redis' Lua cjson encodes an empty array as `{}`; read it back as empty.
    if isinstance(value, dict) and not value:
        return ()
    return value


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str
    at: UtcDatetime
    break_glass_reason: str | None = None


class Draft(BaseModel):
    """A validated form waiting on its confirmation step (kept briefly, then a request or gone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=DRAFT_ID.pattern)]
    user: str
    channel: str
    engine_id: str
    engine_name: str
    schedule: str
    reserve: int | None = None
    max_files: int | None = None
    reason: str = ""
    created_at: UtcDatetime


class BackupRequest(BaseModel):
    """One request for a backup policy, as kept in the store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=REQUEST_ID.pattern)]
    requester: str
    channel: str
    engine_id: str
    engine_name: str
    schedule: str
    timezone: str = "UTC"
    reserve: int | None = None
    max_files: int | None = None
    reason: str = ""
    state: State = State.PENDING
    created_at: UtcDatetime
    expires_at: UtcDatetime
    required_approvals: Annotated[int, Field(ge=1)] = 1
    approvals: tuple[Approval, ...] = ()
    decided_by: str | None = None
    decision_reason: str | None = None
    message_channel: str | None = None
    message_ts: str | None = None
    status_channel: str | None = None
    status_ts: str | None = None
    policy: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    updated_at: UtcDatetime
    reminders_sent: int = 0
    version: int = 0

    @field_validator("approvals", mode="before")
    @classmethod
    def _approvals_from_lua(cls, value: Any) -> Any:
        return _tuple_from_lua(value)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def approved_by(self) -> tuple[str, ...]:
        return tuple(a.user for a in self.approvals)

    @property
    def approvals_missing(self) -> int:
        """How many more distinct approvals the request needs (0 once approved)."""
        if self.state is not State.PENDING:
            return 0
        return max(self.required_approvals - len(self.approvals), 0)

    @property
    def break_glass(self) -> Approval | None:
        """The break-glass approval, when the request was approved that way."""
        return next((a for a in self.approvals if a.break_glass_reason), None)

    def is_expired(self, now: datetime) -> bool:
        """Past its approval deadline (whether or not the expiry task has marked it yet)."""
        return now >= self.expires_at


def request_from_draft(
    draft: Draft,
    *,
    now: datetime,
    ttl: timedelta,
    required_approvals: int,
    timezone: str,
    request_id: str | None = None,
) -> BackupRequest:
    """The pending request made from a confirmed draft."""
    return BackupRequest(
        id=request_id or new_request_id(),
        requester=draft.user,
        channel=draft.channel,
        engine_id=draft.engine_id,
        engine_name=draft.engine_name,
        schedule=draft.schedule,
        timezone=timezone,
        reserve=draft.reserve,
        max_files=draft.max_files,
        reason=draft.reason,
        state=State.PENDING,
        created_at=now,
        expires_at=now + ttl,
        required_approvals=required_approvals,
        updated_at=now,
    )
