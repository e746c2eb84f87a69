"""What happens to a request, step by step: submit, approve (claim, one CSE call, record the
outcome), reject, cancel, expire, remind. The listeners call this; it knows nothing of Bolt.

Every state change goes through the store's atomic transitions, and every message is rebuilt
from the record the store returns, so whatever the number of clicks or replicas, what people see
is what the store holds. Slack is reached only through the `Announcer` given to the flow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot import metrics
from bot.core.approval import (
    Decision,
    Policy,
    Refusal,
    decide_approve,
    decide_cancel,
    decide_reject,
)
from bot.core.requests import BackupRequest, Draft, State, request_from_draft
from bot.core.schedule import next_runs, parse_schedule
from bot.cse import CseClient, CseError, CseOutcomeUnknown, CseUnavailable
from bot.iam import IamError
from bot.settings import Settings
from bot.store import (
    LEASE,
    AlreadySubmitted,
    RequestNotFound,
    RequestStore,
    StoreUnavailable,
    TransitionRefused,
)

log = logging.getLogger("bot.flow")

# An approved request whose CSE call has not been recorded after this long is marked unknown:
# the replica that made the call died, or could not write the outcome.
STUCK_AFTER = timedelta(minutes=5)
# Redis away when the CSE outcome comes back: keep trying to record it this long (the lease
# says this replica is alive meanwhile), telling people after the first few failed attempts.
RECORD_PATIENCE = STUCK_AFTER - timedelta(seconds=30)
TELL_AFTER_ATTEMPTS = 5  # about three seconds of failures
NOTE_ATTEMPTS = 6  # about five seconds of trying to note where a message was posted
# Who holds a lease (for people reading Redis, and the logs).
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
NO_OUTCOME = (
    "The CSE call was made but its outcome was never recorded (the bot stopped during the "
    "call). Check the CSE console before trying again."
)
DRAFT_TTL = timedelta(hours=2)
DRAFT_GONE = "This form has expired or was already sent. Start again with `/cse-backup create`."
SYSTEM = "system"
CSE_ACTOR = "cse"


class FlowError(Exception):
    """Something the person must hear; str(e) is ready to show (mrkdwn, already safe).

    `channel` is where the request lives, for telling someone who acted from a modal.
    """

    def __init__(self, message: str, *, channel: str | None = None) -> None:
        super().__init__(message)
        self.channel = channel


class Refused(FlowError):
    """The decision functions or the store said no; nothing changed."""


class NotFound(FlowError):
    pass


class NeedsBreakGlassReason(FlowError):
    """The requester is a break-glass user approving their own request: ask for a reason."""

    def __init__(self, request: BackupRequest) -> None:
        super().__init__("A break-glass approval needs a reason.", channel=request.channel)
        self.request = request


class PostFailed(FlowError):
    """Slack refused to post the approval message; the request was withdrawn."""


class Announcer(Protocol):
    """Where the flow shows things to people (the Slack publisher, in the running bot)."""

    async def post_approval(self, request: BackupRequest, channel: str) -> str: ...

    async def post_status(self, request: BackupRequest, channel: str) -> str: ...

    async def refresh(self, request: BackupRequest) -> None: ...

    async def post_result(self, request: BackupRequest) -> None: ...

    async def announce_break_glass(
        self, request: BackupRequest, user: str, reason: str
    ) -> None: ...

    async def remind(self, request: BackupRequest) -> None: ...


GroupsOf = Callable[[str], Awaitable[frozenset[str]]]


async def _no_groups(user: str) -> frozenset[str]:
    del user
    return frozenset()


def _now() -> datetime:
    return datetime.now(UTC)


class BackupFlow:
    def __init__(
        self,
        settings: Settings,
        *,
        store: RequestStore,
        cse: CseClient,
        announcer: Announcer,
        groups_of: GroupsOf = _no_groups,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.cse = cse
        self.announcer = announcer
        self.groups_of = groups_of
        self.clock = clock
        self.policy = Policy.from_settings(settings)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._accepting = True

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def stop_accepting(self) -> None:
        """Shutting down: refuse new CSE calls (the ones under way finish)."""
        self._accepting = False

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for CSE calls under way; returns how many did not end."""
        pending = set(self._in_flight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            return len(still)
        return 0

    # --- lookups -----------------------------------------------------------------------------

    async def get(self, request_id: str) -> BackupRequest:
        request = await self.store.get(request_id)
        if request is None:
            raise NotFound(
                f"There is no backup policy request `{request_id}` (or its history has expired)."
            )
        return request

    # --- submit ------------------------------------------------------------------------------

    async def save_draft(self, draft: Draft) -> None:
        await self.store.save_draft(draft, ttl=DRAFT_TTL)

    async def get_draft(self, draft_id: str) -> Draft:
        draft = await self.store.get_draft(draft_id)
        if draft is None:
            raise NotFound(DRAFT_GONE)
        return draft

    async def carried_or_stored(self, carried: Draft | None, draft_id: str) -> Draft:
        """The draft a view carried (the form's confirmation step), else the one in the store.
        Either way it lasts DRAFT_TTL, and a draft already sent is refused by `submit`."""
        if carried is None or carried.id != draft_id:
            return await self.get_draft(draft_id)
        if self.clock() - carried.created_at > DRAFT_TTL:
            raise NotFound(DRAFT_GONE)
        return carried

    async def submit(self, draft: Draft, user: str) -> BackupRequest:
        """Turn a confirmed draft into a pending request (store only; `announce` posts it)."""
        if draft.user != user:
            raise Refused("Only the person who filled in this form can send it.")
        now = self.clock()
        request = request_from_draft(
            draft,
            now=now,
            ttl=timedelta(seconds=self.settings.approval_ttl),
            required_approvals=self.settings.required_approvals,
            timezone=self.settings.cse_schedule_timezone,
        )
        try:
            # One atomic step: the draft is marked sent and deleted with the request's creation.
            await self.store.create(request, draft_id=draft.id, once_ttl=DRAFT_TTL)
        except AlreadySubmitted:
            raise Refused(
                "This form was already sent for approval; `/cse-backup list` shows the request "
                "(if it is not there, start again with `/cse-backup create`)."
            ) from None
        _counted(request, "submitted", user)
        return request

    async def announce(self, request: BackupRequest) -> BackupRequest:
        """Post the approval message (and the status message when APPROVAL_CHANNEL is set).

        When Slack refuses the approval message the request is withdrawn (nobody could approve
        it) and PostFailed says why."""
        approval_channel = self.settings.approval_channel or request.channel
        try:
            ts = await self.announcer.post_approval(request, approval_channel)
        except PostFailed as exc:
            await self._withdraw(request, "the approval message could not be posted")
            raise PostFailed(str(exc), channel=request.channel) from None
        now = self.clock()
        try:
            request = await self._note(
                request.id, {"message_channel": approval_channel, "message_ts": ts}, now
            )
        except StoreUnavailable:
            raise FlowError(
                f"Request `{request.id}` was posted for approval in <#{approval_channel}>, but "
                "the request store (Redis) stopped answering before the bot could note where. "
                "Approving it still works; its message may not show the outcome. Tell the bot's "
                "operators if this happens again.",
                channel=request.channel,
            ) from None
        if approval_channel != request.channel:
            try:
                status_ts = await self.announcer.post_status(request, request.channel)
            except PostFailed as exc:
                log.warning("status message for %s not posted: %s", request.id, exc)
            else:
                try:
                    request = await self._note(
                        request.id,
                        {"status_channel": request.channel, "status_ts": status_ts},
                        now,
                    )
                except StoreUnavailable:
                    log.warning("status message of %s posted but not noted", request.id)
        return request

    async def _note(self, request_id: str, patch: dict[str, Any], now: datetime) -> BackupRequest:
        """Record where a message was posted; Redis may blink, so try for a few seconds (the
        message is already in Slack: giving up at once would leave it unknown to the store)."""
        delay = 0.2
        for attempt in range(NOTE_ATTEMPTS):
            try:
                return await self.store.update_fields(request_id, patch, now)
            except StoreUnavailable:
                metrics.REDIS_ERRORS.inc()
                if attempt == NOTE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _withdraw(self, request: BackupRequest, why: str) -> None:
        try:
            final = await self.store.transition(
                request.id,
                State.CANCELLED,
                SYSTEM,
                self.clock(),
                expected=State.PENDING,
                patch={"decided_by": SYSTEM, "decision_reason": why},
            )
        except (TransitionRefused, StoreUnavailable) as exc:
            log.error("could not withdraw %s after a failed post: %s", request.id, exc)
        else:
            _counted(final, "cancelled", SYSTEM)  # every submitted request ends in one outcome

    # --- approve -----------------------------------------------------------------------------

    async def approve(
        self, request_id: str, user: str, break_glass_reason: str | None = None
    ) -> BackupRequest:
        """One Approve click. Returns the request as it ends up (created/failed/... or pending
        for N-of-M); raises Refused for a refused click or a lost race."""
        request = await self.get(request_id)
        groups = await self.groups_of(user)
        now = self.clock()
        decision = decide_approve(self.policy, request, user, groups, now, break_glass_reason)
        if not decision.allowed:
            if decision.refusal is Refusal.BREAK_GLASS_NEEDS_REASON:
                raise NeedsBreakGlassReason(request)
            _approval(request, "refused", user, decision.refusal)
            raise Refused(decision.message, channel=request.message_channel)
        if not self._accepting:
            raise Refused("The bot is restarting; click Approve again in a few seconds.")
        reason = (break_glass_reason or "").strip() if decision.break_glass else None
        try:
            result = await self.store.approve(request.id, user, now, reason)
        except TransitionRefused as exc:
            _approval(exc.current, "lost_race", user, exc.conflict)
            raise Refused(
                self._refusal_now(exc.current, user, groups, now),
                channel=request.message_channel,
            ) from None
        except RequestNotFound:
            raise NotFound(f"There is no backup policy request `{request_id}`.") from None
        request = result.request
        if decision.break_glass and reason:
            _approval(request, "break_glass", user)
            await self._quietly(self.announcer.announce_break_glass(request, user, reason))
        if not result.claimed:
            _approval(request, "recorded", user)
            await self._quietly(self.announcer.refresh(request))
            return request
        _approval(request, "claimed", user)
        task = asyncio.ensure_future(self._create(request))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        # Shielded: a cancelled Slack handler must never cut a CSE call and its record short.
        return await asyncio.shield(task)

    def _refusal_now(
        self, current: BackupRequest, user: str, groups: frozenset[str], now: datetime
    ) -> str:
        """Why an approval the store refused did not count, from the request as it is now."""
        # A placeholder break-glass reason: the requester should hear the request's state,
        # not be asked for a reason again.
        decision: Decision = decide_approve(self.policy, current, user, groups, now, "-")
        if not decision.allowed:
            return decision.message
        return f"This request is {current.state.value}; nothing changed."

    async def _create(self, request: BackupRequest) -> BackupRequest:
        """The claimed request: show it approved, call CSE once, record and show the outcome.

        The lease taken with the claim is renewed until the outcome is recorded, so other
        replicas know this one is alive; if it dies, the lease lapses and a sweep marks the
        request unknown (never calls CSE again)."""
        holding = asyncio.ensure_future(self._hold_lease(request.id))
        try:
            shown = asyncio.ensure_future(self._quietly(self.announcer.refresh(request)))
            to, patch = await self._call_cse(request)
            await shown
            final, told = await self._record(request, to, patch)
        finally:
            holding.cancel()
        await self._quietly(self.announcer.refresh(final))
        if not told:
            await self._quietly(self.announcer.post_result(final))
        _counted(final, final.state.value, CSE_ACTOR)
        return final

    async def _hold_lease(self, request_id: str) -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            try:
                if not await self.store.renew_lease(request_id, INSTANCE):
                    return
            except StoreUnavailable:
                metrics.REDIS_ERRORS.inc()

    async def _call_cse(self, request: BackupRequest) -> tuple[State, dict[str, Any]]:
        started = self.clock()
        try:
            policy = await self.cse.create_backup_policy(
                request.engine_id, request.schedule, request.reserve, request.max_files
            )
        except CseOutcomeUnknown as exc:
            return State.UNKNOWN, {"error": _cse_error(exc)}
        except CseError as exc:
            return State.FAILED, {"error": _cse_error(exc)}
        except CseUnavailable as exc:
            if exc.iam:
                return State.FAILED, {"error": _iam_error(str(exc))}
            return State.FAILED, {
                "error": {
                    "status": None,
                    "error_code": "CSE_UNREACHABLE",
                    "error_msg": str(exc),
                    "detail": "Nothing reached CSE; it is safe to edit and resubmit.",
                    "hint": (
                        "CSE could not be reached, so nothing was sent. Try again in a few "
                        "minutes with *Edit and resubmit*; if it keeps happening, the bot's "
                        "operators should check `CSE_ENDPOINT` and the network path to CSE."
                    ),
                }
            }
        except IamError as exc:
            return State.FAILED, {"error": _iam_error(str(exc))}
        except Exception as exc:  # the request may have left: never guess, never retry
            log.exception("CSE call for %s failed unexpectedly", request.id)
            return State.UNKNOWN, {
                "error": {
                    "status": None,
                    "error_code": "UNEXPECTED",
                    "error_msg": f"{type(exc).__name__} during the CSE call",
                    "detail": "",
                }
            }
        zone = ZoneInfo(request.timezone)
        after = policy.created_at or started
        expected = next_runs(parse_schedule(request.schedule), after, 1, zone)
        record = policy.as_dict()
        record["expected_next_at"] = expected[0].isoformat() if expected else None
        return State.CREATED, {"policy": record}

    async def _record(
        self, request: BackupRequest, to: State, patch: dict[str, Any]
    ) -> tuple[BackupRequest, bool]:
        """Write the CSE outcome; returns it, and whether people were already shown it.

        Redis may be away: keep trying for RECORD_PATIENCE. After the first few failed attempts
        the outcome is shown (refreshed message and result post) marked as not recorded yet,
        never as if it were; once written, the message is refreshed from the store."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_PATIENCE.total_seconds()
        delay, attempts, told = 0.2, 0, False
        while True:
            try:
                final = await self.store.transition(
                    request.id, to, CSE_ACTOR, self.clock(), expected=State.APPROVED, patch=patch
                )
                if told:
                    log.info("outcome %s of %s recorded after all", to, request.id)
                return final, told
            except TransitionRefused as exc:
                # Marked unknown meanwhile (a stuck-call sweep): keep what CSE said visible.
                log.error(
                    "outcome %s of %s not recorded, the request is already %s",
                    to,
                    request.id,
                    exc.current.state,
                )
                return exc.current.model_copy(update={"state": to, **patch}), told
            except StoreUnavailable:
                metrics.REDIS_ERRORS.inc()
                attempts += 1
            if attempts == TELL_AFTER_ATTEMPTS and not told:
                told = True
                shown = unrecorded(request, to, patch)
                await self._quietly(self.announcer.refresh(shown))
                await self._quietly(self.announcer.post_result(shown))
            if loop.time() >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        log.error(
            "outcome %s of %s could not be written to the store; shown as not recorded",
            to,
            request.id,
            extra={"request_id": request.id, "to_state": str(to)},
        )
        return unrecorded(request, to, patch), told

    # --- reject, cancel ----------------------------------------------------------------------

    async def check_reject(self, request_id: str, user: str) -> BackupRequest:
        """Before asking for a reason: may `user` reject it at all?"""
        request = await self.get(request_id)
        groups = await self.groups_of(user)
        decision = decide_reject(self.policy, request, user, groups, self.clock())
        if not decision.allowed:
            raise Refused(decision.message, channel=request.message_channel)
        return request

    async def reject(self, request_id: str, user: str, reason: str) -> BackupRequest:
        request = await self.check_reject(request_id, user)
        try:
            final = await self.store.transition(
                request.id,
                State.REJECTED,
                user,
                self.clock(),
                expected=State.PENDING,
                patch={"decided_by": user, "decision_reason": reason.strip() or None},
            )
        except TransitionRefused as exc:
            groups = await self.groups_of(user)
            decision = decide_reject(self.policy, exc.current, user, groups, self.clock())
            raise Refused(
                decision.message or "This request can no longer be rejected.",
                channel=request.message_channel,
            ) from None
        _counted(final, "rejected", user)
        await self._quietly(self.announcer.refresh(final))
        return final

    async def cancel(self, request_id: str, user: str) -> BackupRequest:
        request = await self.get(request_id)
        decision = decide_cancel(self.policy, request, user)
        if not decision.allowed:
            raise Refused(decision.message)
        try:
            final = await self.store.transition(
                request.id,
                State.CANCELLED,
                user,
                self.clock(),
                expected=State.PENDING,
                patch={"decided_by": user},
            )
        except TransitionRefused as exc:
            decision = decide_cancel(self.policy, exc.current, user)
            raise Refused(decision.message or "This request can no longer be cancelled.") from None
        _counted(final, "cancelled", user)
        await self._quietly(self.announcer.refresh(final))
        return final

    # --- background: expiry, stuck calls, reminders ------------------------------------------

    async def sweep(self) -> int:
        """Expire overdue requests and give up on stuck CSE calls; safe on every replica at once
        (each change is a compare-and-set in the store). Returns how many requests changed."""
        now = self.clock()
        changed = 0
        for request_id in await self.store.due_for_expiry(now):
            try:
                final = await self.store.transition(
                    request_id, State.EXPIRED, SYSTEM, now, expected=State.PENDING
                )
            except (TransitionRefused, RequestNotFound):
                continue  # another replica, or a click, got there first
            _counted(final, "expired", SYSTEM)
            changed += 1
            await self._quietly(self.announcer.refresh(final))
        # The replica making a CSE call holds the request's lease until the outcome is recorded:
        # a lapsed lease means it died mid-call. And our own calls end within CSE_TIMEOUT (their
        # recording within RECORD_PATIENCE): anything approved for longer is stuck anyway.
        stuck_after = max(STUCK_AFTER, timedelta(seconds=self.settings.cse_timeout + 60))
        stuck = {r.id: r for r in await self.store.stale_approved(now - stuck_after)}
        for orphan in await self.store.orphaned_approved(now - LEASE):
            stuck.setdefault(orphan.id, orphan)
        for request in stuck.values():
            try:
                final = await self.store.transition(
                    request.id,
                    State.UNKNOWN,
                    SYSTEM,
                    now,
                    expected=State.APPROVED,
                    patch={
                        "error": {
                            "status": None,
                            "error_code": "NO_OUTCOME",
                            "error_msg": NO_OUTCOME,
                            "detail": "",
                        }
                    },
                )
            except (TransitionRefused, RequestNotFound):
                continue
            _counted(final, "unknown", SYSTEM)
            changed += 1
            await self._quietly(self.announcer.refresh(final))
            await self._quietly(self.announcer.post_result(final))
        try:
            metrics.set_pending(len(await self.store.list_pending(limit=1000)))
        except StoreUnavailable:
            metrics.REDIS_ERRORS.inc()
        return changed

    async def send_reminders(self) -> int:
        """Re-announce pending requests at each APPROVAL_REMINDERS offset, once across replicas."""
        offsets = sorted(self.settings.approval_reminders)
        if not offsets:
            return 0
        now = self.clock()
        sent = 0
        for request in await self.store.list_pending(limit=1000):
            age = (now - request.created_at).total_seconds()
            due = sum(1 for offset in offsets if age >= offset)
            if due <= request.reminders_sent or request.is_expired(now):
                continue
            key = f"remind:{request.id}:{due}"
            if not await self.store.claim_once(key, timedelta(seconds=self.settings.approval_ttl)):
                continue
            try:
                current = await self.store.update_fields(request.id, {"reminders_sent": due}, now)
            except (TransitionRefused, RequestNotFound):
                continue
            if current.state is not State.PENDING:
                continue
            await self._quietly(self.announcer.remind(current))
            sent += 1
        return sent

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    async def _quietly(call: Awaitable[Any]) -> None:
        """Showing is best effort: the store already holds the truth, the next update shows it."""
        try:
            await call
        except Exception:
            log.exception("a Slack update failed (the stored state is unaffected)")


def _counted(request: BackupRequest, outcome: str, actor: str) -> None:
    """A request reached `outcome`: count it and log one line saying so."""
    metrics.REQUESTS.labels(outcome).inc()
    log.info(
        "request %s %s by %s",
        request.id,
        outcome,
        actor,
        extra={
            "event": f"request.{outcome}",
            "request_id": request.id,
            "user": actor,
            "channel": request.channel,
            "outcome": outcome,
        },
    )


def _approval(request: BackupRequest, outcome: str, user: str, why: object = None) -> None:
    """An Approve click ended as `outcome` (claimed, recorded, refused, lost_race, break_glass)."""
    metrics.APPROVALS.labels(outcome).inc()
    log.info(
        "approve %s by %s: %s",
        request.id,
        user,
        outcome,
        extra={
            "event": "request.approve",
            "request_id": request.id,
            "user": user,
            "channel": request.message_channel or request.channel,
            "outcome": outcome,
            "reason": str(why) if why is not None else None,
        },
    )


def unrecorded(request: BackupRequest, to: State, patch: dict[str, Any]) -> BackupRequest:
    """The outcome CSE gave, for showing while the store cannot record it: marked
    `unrecorded` (in its policy or error), so every message says it is not recorded yet."""
    shown = {key: dict(value) if isinstance(value, dict) else value for key, value in patch.items()}
    for key in ("policy", "error"):
        if isinstance(shown.get(key), dict):
            shown[key]["unrecorded"] = True
    return request.model_copy(update={"state": to, **shown})


def _iam_error(text: str) -> dict[str, Any]:
    return {
        "status": None,
        "error_code": "IAM_TOKEN",
        "error_msg": text,
        "detail": "No service token, so nothing was sent to CSE.",
        "hint": (
            "The bot could not get a service token from IAM, so nothing was sent to CSE. Tell "
            "the bot's operators (the `IAM_*` settings, or IAM itself), then use *Edit and "
            "resubmit*."
        ),
    }


def _cse_error(exc: CseError) -> dict[str, Any]:
    error: dict[str, Any] = {
        "status": exc.status,
        "error_code": exc.error_code,
        "error_msg": exc.error_msg,
        "detail": exc.detail,
    }
    hint = _hint(exc)
    if hint:
        error["hint"] = hint
    return error


def _hint(exc: CseError) -> str:
    """What a person can do about a failed CSE call (empty when the outcome is unknown: the
    message then says to check the console)."""
    if isinstance(exc, CseOutcomeUnknown):
        return ""
    status = exc.status or 0
    if exc.kind == "auth" or status == 401:
        return (
            "CSE refused the bot's service token (expired or invalid), so nothing was created. "
            "Ask the bot's operators to renew `CSE_AUTH_TOKEN` (or check the `IAM_*` settings), "
            "then use *Edit and resubmit*."
        )
    if status == 403:
        return (
            "The bot's service account may not create backup policies on this engine. Ask the "
            "bot's operators to grant it CSE permissions, then use *Edit and resubmit*."
        )
    if status == 404:
        return "CSE does not know this engine. Check the engine with *Edit and resubmit*."
    if status == 429:
        return "CSE is throttling requests. Try again in a minute with *Edit and resubmit*."
    if 400 <= status < 500:
        return "CSE refused these values. Correct them with *Edit and resubmit*."
    return (
        "CSE reported an error and did not create the policy. Try again in a few minutes with "
        "*Edit and resubmit*; if it keeps failing, tell the bot's operators."
    )
