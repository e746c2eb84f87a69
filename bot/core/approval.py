"""Who may do what to which request, and why not (CONTRACT §3, §4). Pure: no I/O, no Slack calls.

Each `decide_*` function returns a Decision; a refusal carries a reason enum for code and a
plain-English message for the person who clicked. Mentions in messages are in the form Slack
renders (`<@U…>`, `<!subteam^S…>`, `<#C…>`), never user-typed text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from bot.core.requests import BackupRequest, State

if TYPE_CHECKING:
    from bot.settings import Settings


class Refusal(StrEnum):
    NOT_PENDING = "not_pending"
    SELF_APPROVAL = "self_approval"
    SELF_REJECTION = "self_rejection"
    NOT_APPROVER = "not_approver"
    ALREADY_APPROVED_BY_YOU = "already_approved_by_you"
    BREAK_GLASS_NEEDS_REASON = "break_glass_needs_reason"
    NOT_REQUESTER = "not_requester"
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    NOT_REQUESTER_ALLOWED = "not_requester_allowed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    refusal: Refusal | None = None
    message: str = ""
    # The requester approves their own request under BREAK_GLASS_USERS: announce it loudly.
    break_glass: bool = False

    @classmethod
    def allow(cls, *, break_glass: bool = False) -> Decision:
        return cls(allowed=True, break_glass=break_glass)

    @classmethod
    def refuse(cls, refusal: Refusal, message: str) -> Decision:
        return cls(allowed=False, refusal=refusal, message=message)


@dataclass(frozen=True)
class Policy:
    """Who may request and approve. Empty sets mean "no restriction" (CONTRACT §3 defaults)."""

    approvers: frozenset[str] = frozenset()
    requesters: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()
    break_glass_users: frozenset[str] = frozenset()
    required_approvals: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            approvers=frozenset(settings.approvers),
            requesters=frozenset(settings.requesters),
            allowed_channels=frozenset(settings.allowed_channels),
            break_glass_users=frozenset(settings.break_glass_users),
            required_approvals=settings.required_approvals,
        )


def mention(principal: str) -> str:
    """A user, user-group or channel id as Slack renders it."""
    if principal.startswith("S"):
        return f"<!subteam^{principal}>"
    if principal[:1] in {"C", "G"}:
        return f"<#{principal}>"
    return f"<@{principal}>"


def _either(items: Iterable[str], word: str = "or") -> str:
    ordered = sorted(items, key=lambda p: (not p.startswith("S"), p))  # groups first
    parts = [mention(p) for p in ordered]
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} {word} {parts[-1]}"


def _member(allowed: frozenset[str], user: str, user_groups: frozenset[str]) -> bool:
    return user in allowed or not allowed.isdisjoint(user_groups)


def _members_of(allowed: frozenset[str]) -> str:
    if any(p.startswith("S") for p in allowed):
        return f"members of {_either(allowed)}"
    return _either(allowed)


def _not_pending(request: BackupRequest) -> Decision:
    by = f" by {mention(request.decided_by)}" if request.decided_by else ""
    match request.state:
        case State.APPROVED | State.CREATED | State.FAILED | State.UNKNOWN:
            text = f"This request was already approved{by}; nothing more to do."
        case State.REJECTED:
            text = f"This request was already rejected{by}."
        case State.CANCELLED:
            text = "This request was cancelled by the person who asked for it."
        case State.EXPIRED:
            text = "This request expired before it was approved; ask for a new one."
        case _:  # pragma: no cover - PENDING never reaches here
            text = f"This request is {request.state}."
    return Decision.refuse(Refusal.NOT_PENDING, text)


_EXPIRED_TEXT = "This request has expired; ask for a new one with `/cse-backup create`."


def decide_create(policy: Policy, user: str, user_groups: frozenset[str], channel: str) -> Decision:
    """May `user` ask for a backup policy from `channel`?"""
    if policy.allowed_channels and channel not in policy.allowed_channels:
        return Decision.refuse(
            Refusal.CHANNEL_NOT_ALLOWED,
            f"Backup policies can be requested only in {_either(policy.allowed_channels)}.",
        )
    if policy.requesters and not _member(policy.requesters, user, user_groups):
        return Decision.refuse(
            Refusal.NOT_REQUESTER_ALLOWED,
            f"Only {_members_of(policy.requesters)} can request backup policies.",
        )
    return Decision.allow()


def decide_approve(
    policy: Policy,
    request: BackupRequest,
    user: str,
    user_groups: frozenset[str],
    now: datetime,
    reason: str | None = None,
) -> Decision:
    """May `user` approve `request` now? `reason` is the break-glass reason, when one was given.

    The requester may approve their own request only when listed in BREAK_GLASS_USERS and with
    a reason; they must still be an approver when APPROVERS is set.
    """
    if request.state is not State.PENDING:
        return _not_pending(request)
    if request.is_expired(now):
        return Decision.refuse(Refusal.EXPIRED, _EXPIRED_TEXT)
    break_glass = False
    if user == request.requester:
        if user not in policy.break_glass_users:
            return Decision.refuse(
                Refusal.SELF_APPROVAL,
                "You asked for this backup policy, so someone else must approve it.",
            )
        if not (reason or "").strip():
            return Decision.refuse(
                Refusal.BREAK_GLASS_NEEDS_REASON,
                "To approve your own request (break glass) you must give a reason; "
                "it will be announced in the channel.",
            )
        break_glass = True
    if policy.approvers and not _member(policy.approvers, user, user_groups):
        return Decision.refuse(
            Refusal.NOT_APPROVER, f"Only {_members_of(policy.approvers)} can approve."
        )
    if user in request.approved_by:
        missing = request.approvals_missing
        more = f" It still needs {missing} more approval{'s' * (missing != 1)} from others."
        return Decision.refuse(
            Refusal.ALREADY_APPROVED_BY_YOU,
            "You have already approved this request." + (more if missing else ""),
        )
    return Decision.allow(break_glass=break_glass)


def decide_reject(
    policy: Policy,
    request: BackupRequest,
    user: str,
    user_groups: frozenset[str],
    now: datetime,
) -> Decision:
    """May `user` reject `request`? Approvers may (anyone but the requester when none are set)."""
    if request.state is not State.PENDING:
        return _not_pending(request)
    if request.is_expired(now):
        return Decision.refuse(Refusal.EXPIRED, _EXPIRED_TEXT)
    if user == request.requester:
        return Decision.refuse(
            Refusal.SELF_REJECTION,
            "You asked for this backup policy; use Cancel to withdraw it.",
        )
    if policy.approvers and not _member(policy.approvers, user, user_groups):
        return Decision.refuse(
            Refusal.NOT_APPROVER, f"Only {_members_of(policy.approvers)} can reject."
        )
    return Decision.allow()


def decide_cancel(policy: Policy, request: BackupRequest, user: str) -> Decision:
    """May `user` withdraw `request`? Only its requester, and only while it is pending."""
    del policy  # same signature as the other decisions; nobody but the requester may cancel
    if user != request.requester:
        return Decision.refuse(
            Refusal.NOT_REQUESTER,
            f"Only {mention(request.requester)}, who asked for this backup policy, can cancel it.",
        )
    if request.state is not State.PENDING:
        return _not_pending(request)
    return Decision.allow()
