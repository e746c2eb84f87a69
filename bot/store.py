"""The request store: the only module that talks to Redis (CONTRACT §5).

Every change of a request is one Lua script: it checks the current state, writes the new record,
keeps the indexes in step and appends the audit entry, all in one atomic step. So a transition
happens at most once whatever the number of clicks, replicas or Socket Mode connections, and a
crash can never leave a request changed without its audit entry.

Layout (all keys under the configured prefix `P`):

    P:req:{id}            hash: doc (the request as JSON), exp (approval deadline, epoch seconds)
    P:audit:{id}          stream: one entry per transition of that request
    P:audit               stream: every transition of every request, capped (MAXLEN ~ 10000)
    P:idx:channel:{ch}    sorted set of request ids by created_at (the `list` command)
    P:idx:user:{user}     sorted set of request ids by created_at ("your requests")
    P:idx:pending         sorted set of pending ids by expires_at (the expiry task)
    P:idx:approved        sorted set of approved ids by claim time (stuck CSE calls)
    P:idx:created         sorted set of the latest created ids by creation time (App Home),
                          capped at CREATED_KEPT
    P:idx:home            sorted set of users by when they last opened the App Home tab
    P:draft:{id}          a form awaiting confirmation, with a TTL
    P:once:{key}          SET NX EX markers (reminders, expiry) shared by replicas
    P:lease:{id}          held (PX, renewed) by the replica making the CSE call of an approved
                          request; gone while still approved = that replica died mid-call

With no REDIS_URL the same code runs over an in-process fakeredis server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.core.requests import (
    TERMINAL,
    BackupRequest,
    Draft,
    State,
    UtcDatetime,
    sources_of,
)

log = logging.getLogger(__name__)

HISTORY = timedelta(days=30)
# How long the replica making a CSE call holds its request's lease without renewing it. It
# renews every third of this while the call (and the recording of its outcome) is under way;
# a lease that lapses while the request is still `approved` means that replica died mid-call.
LEASE = timedelta(seconds=10)
AUDIT_MAXLEN = 10_000
CREATED_KEPT = 50
# Every transition script also returns the latest App Home viewers (at most VIEWERS_SEEN), so
# republishing the tabs after a change needs no extra round trip to find who has one open.
VIEWERS_SEEN = 25
VIEWERS_FRESH = 60.0  # seconds a snapshot of the viewers is used before asking Redis again


class StoreUnavailable(Exception):
    """Redis could not be reached or refused the command; nothing was changed by us."""

    def __init__(self, detail: str, *, answering: bool = False) -> None:
        if answering:
            text = (
                "The request store (Redis) refused the operation; nothing was changed. "
                f"Try again in a minute, and tell the bot's operators if it persists ({detail})."
            )
        else:
            text = (
                "The request store (Redis) is not answering, so nothing was changed. "
                f"Try again in a minute, and tell the bot's operators if it persists ({detail})."
            )
        super().__init__(text)
        self.detail = detail


class Conflict(StrEnum):
    """Why the store refused a change."""

    STATE = "state"  # the request is not in an expected state (already decided, ...)
    EXPIRED = "expired"  # pending, but its approval deadline has passed
    ALREADY_APPROVED = "already_approved"  # this user already approved it
    SELF_APPROVAL = "self_approval"  # the requester, without a break-glass reason
    NOT_DUE = "not_due"  # expiry asked before the deadline
    EXISTS = "exists"  # create() with an id that is already taken


class TransitionRefused(Exception):
    """The store refused the change; `current` is the request as it is now."""

    def __init__(self, current: BackupRequest, conflict: Conflict) -> None:
        super().__init__(f"{current.id} is {current.state}: refused ({conflict})")
        self.current = current
        self.conflict = conflict


class RequestNotFound(LookupError):
    """No such request (never existed, or its history has expired)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"No backup request {request_id} (it may be older than the history kept)")
        self.request_id = request_id


class AlreadySubmitted(Exception):
    """The draft was already sent for approval (another click, or another replica)."""

    def __init__(self, draft_id: str) -> None:
        super().__init__(f"draft {draft_id} was already sent")
        self.draft_id = draft_id


@dataclass(frozen=True)
class ApproveResult:
    request: BackupRequest  # after this approval
    claimed: bool  # this caller completed the approval: it, and only it, calls CSE
    recorded: bool = True  # the approval was added (refusals raise TransitionRefused instead)


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # the stream entry id
    request_id: str
    actor: str
    at: UtcDatetime
    from_state: State | None
    to_state: State
    note: str = ""


class _Patch(BaseModel):
    """The fields a transition or update may change; anything else is refused up front."""

    model_config = ConfigDict(extra="forbid")

    decided_by: str | None = None
    decision_reason: str | None = None
    message_channel: str | None = None
    message_ts: str | None = None
    status_channel: str | None = None
    status_ts: str | None = None
    policy: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    reminders_sent: int = 0


# --- Lua -------------------------------------------------------------------------------------

_LUA_AUDIT = """
local function audit(stream, global, id, actor, at, from, to, note, maxlen)
  redis.call('XADD', stream, '*', 'actor', actor, 'at', at, 'from', from, 'to', to, 'note', note)
  redis.call('XADD', global, 'MAXLEN', '~', maxlen, '*', 'request', id, 'actor', actor,
    'at', at, 'from', from, 'to', to, 'note', note)
end
local function follow_ttl(req, stream)
  local pttl = redis.call('PTTL', req)
  if pttl > 0 then redis.call('PEXPIRE', stream, pttl) end
end
local function viewers(key, limit)
  return redis.call('ZREVRANGE', key, 0, tonumber(limit) - 1, 'WITHSCORES')
end
"""

# KEYS: req, channel index, user index, pending index, audit, global audit, home viewers
#       [, draft, submit marker: the request comes from that draft, sent once]
# ARGV: doc, exp epoch, created epoch, id, ttl seconds, actor, at iso, maxlen, trim-before epoch,
#       viewers limit, submit marker ttl seconds
_LUA_CREATE = (
    _LUA_AUDIT
    + """
local existing = redis.call('HGET', KEYS[1], 'doc')
if existing then return {'exists', existing} end
if #KEYS >= 9 then
  -- The draft is sent once, whatever the number of clicks or replicas; then it is gone.
  if not redis.call('SET', KEYS[9], '1', 'NX', 'EX', ARGV[11]) then return {'submitted'} end
  redis.call('DEL', KEYS[8])
end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'exp', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
-- Forget index entries far older than any history still kept.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[9])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[4])
audit(KEYS[5], KEYS[6], ARGV[4], ARGV[6], ARGV[7], '', 'pending', '', ARGV[8])
redis.call('EXPIRE', KEYS[5], ARGV[5])
return {'ok', viewers(KEYS[7], ARGV[10])}
"""
)

# KEYS: req, pending index, approved index, audit, global audit, lease, home viewers
# ARGV: user, now epoch, now iso, break-glass reason or '', maxlen, lease ms, viewers limit
_LUA_APPROVE = (
    _LUA_AUDIT
    + """
local raw = redis.call('HGET', KEYS[1], 'doc')
if not raw then return {'missing'} end
local d = cjson.decode(raw)
if d.state ~= 'pending' then return {'state', raw} end
local exp = tonumber(redis.call('HGET', KEYS[1], 'exp'))
if exp == nil or tonumber(ARGV[2]) >= exp then return {'expired', raw} end
local user, glass = ARGV[1], ARGV[4]
if user == d.requester and glass == '' then return {'self_approval', raw} end
local approvals = d.approvals
if type(approvals) ~= 'table' then approvals = {} end
for _, a in ipairs(approvals) do
  if a.user == user then return {'already_approved', raw} end
end
local entry = {user = user, at = ARGV[3], break_glass_reason = cjson.null}
if glass ~= '' then entry.break_glass_reason = glass end
approvals[#approvals + 1] = entry
d.approvals = approvals
d.version = d.version + 1
d.updated_at = ARGV[3]
local claimed, to, note = 0, 'pending', 'approval ' .. #approvals .. ' of ' .. d.required_approvals
-- A break-glass approval completes the request on its own: that is what breaking glass means.
if #approvals >= d.required_approvals or glass ~= '' then
  claimed, to = 1, 'approved'
  d.state = 'approved'
  d.decided_by = user
  redis.call('ZREM', KEYS[2], d.id)
  redis.call('ZADD', KEYS[3], ARGV[2], d.id)
  redis.call('SET', KEYS[6], user, 'PX', ARGV[6])
end
if glass ~= '' then note = 'break glass: ' .. glass end
local out = cjson.encode(d)
redis.call('HSET', KEYS[1], 'doc', out)
audit(KEYS[4], KEYS[5], d.id, user, ARGV[3], 'pending', to, note, ARGV[5])
follow_ttl(KEYS[1], KEYS[4])
return {'ok', out, claimed, viewers(KEYS[7], ARGV[7])}
"""
)

# KEYS: req, pending index, approved index, audit, global audit, lease, home viewers,
#       created index
# ARGV: to, actor, now epoch, now iso, allowed-from (JSON list), patch (JSON), history seconds,
#       note, maxlen, terminal ('1' or '0'), viewers limit, created kept
_LUA_TRANSITION = (
    _LUA_AUDIT
    + """
local raw = redis.call('HGET', KEYS[1], 'doc')
if not raw then return {'missing'} end
local d = cjson.decode(raw)
local from, to = d.state, ARGV[1]
local allowed = false
for _, s in ipairs(cjson.decode(ARGV[5])) do
  if s == from then allowed = true end
end
if not allowed then return {'state', raw} end
if to == 'expired' then
  local exp = tonumber(redis.call('HGET', KEYS[1], 'exp'))
  if exp ~= nil and tonumber(ARGV[3]) < exp then return {'not_due', raw} end
end
for k, v in pairs(cjson.decode(ARGV[6])) do d[k] = v end
d.state = to
d.version = d.version + 1
d.updated_at = ARGV[4]
if from == 'pending' then redis.call('ZREM', KEYS[2], d.id) end
if from == 'approved' then
  redis.call('ZREM', KEYS[3], d.id)
  redis.call('DEL', KEYS[6])
end
if to == 'approved' then redis.call('ZADD', KEYS[3], ARGV[3], d.id) end
if to == 'created' then
  redis.call('ZADD', KEYS[8], ARGV[3], d.id)
  redis.call('ZREMRANGEBYRANK', KEYS[8], 0, -tonumber(ARGV[12]) - 1)
  redis.call('EXPIRE', KEYS[8], ARGV[7])
end
local out = cjson.encode(d)
redis.call('HSET', KEYS[1], 'doc', out)
audit(KEYS[4], KEYS[5], d.id, ARGV[2], ARGV[4], from, to, ARGV[8], ARGV[9])
if ARGV[10] == '1' then
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[4], ARGV[7])
else
  follow_ttl(KEYS[1], KEYS[4])
end
return {'ok', out, from, viewers(KEYS[7], ARGV[11])}
"""
)

# KEYS: req, lease.  ARGV: holder, lease ms
_LUA_RENEW = """
local raw = redis.call('HGET', KEYS[1], 'doc')
if not raw or cjson.decode(raw).state ~= 'approved' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: req.  ARGV: patch (JSON), now iso
_LUA_UPDATE = """
local raw = redis.call('HGET', KEYS[1], 'doc')
if not raw then return {'missing'} end
local d = cjson.decode(raw)
for k, v in pairs(cjson.decode(ARGV[1])) do d[k] = v end
d.version = d.version + 1
d.updated_at = ARGV[2]
local out = cjson.encode(d)
redis.call('HSET', KEYS[1], 'doc', out)
return {'ok', out}
"""


# --- helpers ---------------------------------------------------------------------------------


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("the store needs timezone-aware datetimes")
    return when.astimezone(UTC)


def _epoch(when: datetime) -> str:
    return f"{_aware(when).timestamp():.6f}"


def _iso(when: datetime) -> str:
    return _aware(when).isoformat().replace("+00:00", "Z")


def _seconds(ttl: int | timedelta) -> int:
    seconds = int(ttl.total_seconds()) if isinstance(ttl, timedelta) else int(ttl)
    if seconds <= 0:
        raise ValueError("a TTL must be at least one second")
    return seconds


def _redacted(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except RedisError as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}", answering=True) from exc


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pending = f"{prefix}:idx:pending"
        self.approved = f"{prefix}:idx:approved"
        self.global_audit = f"{prefix}:audit"
        self.home_viewers = f"{prefix}:idx:home"
        self.created = f"{prefix}:idx:created"

    def request(self, request_id: str) -> str:
        return f"{self.prefix}:req:{request_id}"

    def audit(self, request_id: str) -> str:
        return f"{self.prefix}:audit:{request_id}"

    def channel(self, channel: str) -> str:
        return f"{self.prefix}:idx:channel:{channel}"

    def user(self, user: str) -> str:
        return f"{self.prefix}:idx:user:{user}"

    def draft(self, draft_id: str) -> str:
        return f"{self.prefix}:draft:{draft_id}"

    def lease(self, request_id: str) -> str:
        return f"{self.prefix}:lease:{request_id}"

    def once(self, key: str) -> str:
        return f"{self.prefix}:once:{key}"


# --- the store -------------------------------------------------------------------------------


class RequestStore:
    """Requests, drafts, indexes and audit trail in Redis. Every write is one atomic script."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        embedded: bool = False,
        history: timedelta = HISTORY,
        audit_maxlen: int = AUDIT_MAXLEN,
    ) -> None:
        self._redis = client
        self._keys = _Keys(prefix)
        self._embedded = embedded
        self._history = _seconds(history)
        self._maxlen = str(audit_maxlen)
        self._create = client.register_script(_LUA_CREATE)
        self._approve = client.register_script(_LUA_APPROVE)
        self._transition = client.register_script(_LUA_TRANSITION)
        self._update = client.register_script(_LUA_UPDATE)
        self._renew = client.register_script(_LUA_RENEW)
        self._lease_ms = str(int(LEASE.total_seconds() * 1000))
        # The App Home viewers every transition script returns: user -> when they last opened
        # the tab (epoch), merged over replies, and when it was last refreshed (monotonic).
        self._viewers: dict[str, float] = {}
        self._viewers_at = float("-inf")

    def __repr__(self) -> str:
        kind = "embedded" if self._embedded else "redis"
        return f"RequestStore({kind}, prefix={self._keys.prefix!r})"

    @property
    def embedded(self) -> bool:
        """True when running on the in-process store (nothing survives a restart)."""
        return self._embedded

    @property
    def prefix(self) -> str:
        return self._keys.prefix

    async def ping(self) -> None:
        with _unavailable_on_error():
            await self._redis.ping()

    async def aclose(self) -> None:
        with _unavailable_on_error():
            await self._redis.aclose()

    # --- drafts ----------------------------------------------------------------------------

    async def save_draft(self, draft: Draft, ttl: int | timedelta = 3600) -> None:
        with _unavailable_on_error():
            await self._redis.set(
                self._keys.draft(draft.id), draft.model_dump_json(), ex=_seconds(ttl)
            )

    async def get_draft(self, draft_id: str) -> Draft | None:
        with _unavailable_on_error():
            raw = await self._redis.get(self._keys.draft(draft_id))
        return None if raw is None else Draft.model_validate_json(raw)

    async def delete_draft(self, draft_id: str) -> None:
        with _unavailable_on_error():
            await self._redis.delete(self._keys.draft(draft_id))

    # --- requests: writes ------------------------------------------------------------------

    async def create(
        self,
        request: BackupRequest,
        *,
        draft_id: str | None = None,
        once_ttl: int | timedelta = 3600,
    ) -> None:
        """Store a new pending request. Raises TransitionRefused(EXISTS) when the id is taken.

        With `draft_id`, the request is made from that draft, at most once: in the same atomic
        step the draft is marked sent (for `once_ttl`) and deleted; AlreadySubmitted when it was
        sent before (nothing is written then)."""
        if request.state is not State.PENDING or request.approvals:
            raise ValueError("a new request must be pending with no approvals")
        k = self._keys
        waiting = (request.expires_at - request.created_at).total_seconds()
        ttl = max(int(waiting), 0) + self._history
        keys = [
            k.request(request.id),
            k.channel(request.channel),
            k.user(request.requester),
            k.pending,
            k.audit(request.id),
            k.global_audit,
            k.home_viewers,
        ]
        if draft_id is not None:
            keys += [k.draft(draft_id), k.once(f"submit:{draft_id}")]
        with _unavailable_on_error():
            result = await self._create(
                keys=keys,
                args=[
                    request.model_dump_json(),
                    _epoch(request.expires_at),
                    _epoch(request.created_at),
                    request.id,
                    ttl,
                    request.requester,
                    _iso(request.created_at),
                    self._maxlen,
                    _epoch(request.created_at - 3 * timedelta(seconds=self._history)),
                    VIEWERS_SEEN,
                    _seconds(once_ttl),
                ],
            )
        if result[0] == "exists":
            raise TransitionRefused(BackupRequest.model_validate_json(result[1]), Conflict.EXISTS)
        if result[0] == "submitted":
            raise AlreadySubmitted(draft_id or "")
        self._saw_viewers(result[1])
        self._log(request, request.requester, None, State.PENDING, "")

    async def approve(
        self,
        request_id: str,
        user: str,
        now: datetime,
        break_glass_reason: str | None = None,
    ) -> ApproveResult:
        """Add `user`'s approval. The caller that gets `claimed=True` is the one that calls CSE.

        Refused (TransitionRefused) unless the request is pending, before its deadline, and not
        already approved by `user`; the requester needs a break-glass reason, and a break-glass
        approval completes the request on its own.
        """
        k = self._keys
        glass = (break_glass_reason or "").strip()
        with _unavailable_on_error():
            result = await self._approve(
                keys=[
                    k.request(request_id),
                    k.pending,
                    k.approved,
                    k.audit(request_id),
                    k.global_audit,
                    k.lease(request_id),
                    k.home_viewers,
                ],
                args=[
                    user,
                    _epoch(now),
                    _iso(now),
                    glass,
                    self._maxlen,
                    self._lease_ms,
                    VIEWERS_SEEN,
                ],
            )
        request = self._result(request_id, result)
        claimed = bool(int(result[2]))
        self._saw_viewers(result[3])
        self._log(
            request,
            user,
            State.PENDING,
            request.state,
            f"approval {len(request.approvals)} of {request.required_approvals}"
            + (" (break glass)" if glass else ""),
        )
        return ApproveResult(request=request, claimed=claimed)

    async def transition(
        self,
        request_id: str,
        to: State,
        actor: str,
        now: datetime,
        *,
        expected: State | set[State] | frozenset[State],
        patch: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> BackupRequest:
        """Move the request to `to` if it is in one of `expected` (compare-and-set).

        `patch` may set: decided_by, decision_reason, message_channel, message_ts, status_channel,
        status_ts, policy, error, reminders_sent. Rejected and cancelled record `actor` as
        decided_by unless the patch says otherwise. Expiring before the deadline is refused.
        """
        expected_set = {State(expected)} if isinstance(expected, str) else set(map(State, expected))
        allowed = expected_set & sources_of(to)
        if not allowed:
            raise ValueError(
                f"no transition to {to} from {', '.join(sorted(expected_set)) or 'nothing'}"
            )
        fields = dict(patch or {})
        if to in {State.REJECTED, State.CANCELLED}:
            fields.setdefault("decided_by", actor)
        patch_json = self._patch_json(fields)
        if note is None:
            note = str(fields.get("decision_reason") or "")
        k = self._keys
        with _unavailable_on_error():
            result = await self._transition(
                keys=[
                    k.request(request_id),
                    k.pending,
                    k.approved,
                    k.audit(request_id),
                    k.global_audit,
                    k.lease(request_id),
                    k.home_viewers,
                    k.created,
                ],
                args=[
                    str(to),
                    actor,
                    _epoch(now),
                    _iso(now),
                    json.dumps(sorted(allowed)),
                    patch_json,
                    self._history,
                    note,
                    self._maxlen,
                    "1" if to in TERMINAL else "0",
                    VIEWERS_SEEN,
                    CREATED_KEPT,
                ],
            )
        request = self._result(request_id, result)
        self._saw_viewers(result[3])
        self._log(request, actor, State(result[2]), to, note)
        return request

    async def update_fields(
        self, request_id: str, patch: dict[str, Any], now: datetime | None = None
    ) -> BackupRequest:
        """Change non-state fields (message ts, status ts, reminders_sent, ...) atomically."""
        patch_json = self._patch_json(patch)
        with _unavailable_on_error():
            result = await self._update(
                keys=[self._keys.request(request_id)],
                args=[patch_json, _iso(now or datetime.now(UTC))],
            )
        return self._result(request_id, result)

    async def renew_lease(self, request_id: str, holder: str) -> bool:
        """Hold the request's lease for another LEASE while its CSE call is under way; False
        once the request is no longer `approved` (its outcome is recorded)."""
        k = self._keys
        with _unavailable_on_error():
            renewed = await self._renew(
                keys=[k.request(request_id), k.lease(request_id)], args=[holder, self._lease_ms]
            )
        return bool(int(renewed))

    async def claim_once(self, key: str, ttl: int | timedelta) -> bool:
        """True for the first caller (in any replica) to claim `key` within `ttl`."""
        with _unavailable_on_error():
            return bool(await self._redis.set(self._keys.once(key), "1", nx=True, ex=_seconds(ttl)))

    # --- App Home viewers (who to republish the Home tab for after a change) ---------------

    async def note_home_viewer(self, user: str, now: datetime, keep: int = 200) -> None:
        """`user` opened the bot's Home tab at `now`; only the `keep` latest viewers are kept."""
        key = self._keys.home_viewers
        with _unavailable_on_error():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {user: _aware(now).timestamp()})
                pipe.zremrangebyrank(key, 0, -keep - 1)
                pipe.expire(key, self._history)
                await pipe.execute()
        self._viewers[user] = max(_aware(now).timestamp(), self._viewers.get(user, 0.0))

    async def home_viewers(self, since: datetime, limit: int = VIEWERS_SEEN) -> list[str]:
        """Users who opened the Home tab at or after `since`, the latest first.

        Answered without Redis from the viewers the latest transition scripts returned, when
        that was recently: they were read atomically with the change, and anyone who opened the
        tab after it saw the change when their tab was built."""
        after = _aware(since).timestamp()
        if limit <= VIEWERS_SEEN and time.monotonic() - self._viewers_at < VIEWERS_FRESH:
            seen = sorted(self._viewers.items(), key=lambda item: item[1], reverse=True)
            return [user for user, at in seen if at >= after][:limit]
        with _unavailable_on_error():
            users = await self._redis.zrevrangebyscore(
                self._keys.home_viewers, "+inf", after, start=0, num=limit
            )
        return [str(u) for u in users]

    def _saw_viewers(self, flat: Any) -> None:
        """Merge a script's ZREVRANGE ... WITHSCORES reply into the viewers seen (merged, not
        replaced: replies on different connections may arrive out of order)."""
        pairs = list(flat or ())
        for user, at in zip(pairs[::2], pairs[1::2], strict=True):
            user = str(user)
            self._viewers[user] = max(float(at), self._viewers.get(user, float("-inf")))
        if len(self._viewers) > 4 * VIEWERS_SEEN:
            latest = sorted(self._viewers.items(), key=lambda item: item[1], reverse=True)
            self._viewers = dict(latest[:VIEWERS_SEEN])
        self._viewers_at = time.monotonic()

    # --- requests: reads -------------------------------------------------------------------

    async def get(self, request_id: str) -> BackupRequest | None:
        with _unavailable_on_error():
            raw = await self._redis.hget(self._keys.request(request_id), "doc")
        return None if raw is None else BackupRequest.model_validate_json(raw)

    async def list_channel(self, channel: str, limit: int = 20) -> list[BackupRequest]:
        """The channel's requests, newest first (pending and recent history)."""
        return await self._list_index(self._keys.channel(channel), limit, newest_first=True)

    async def list_user(self, user: str, limit: int = 20) -> list[BackupRequest]:
        """`user`'s own requests, newest first."""
        return await self._list_index(self._keys.user(user), limit, newest_first=True)

    async def list_pending(self, limit: int = 100) -> list[BackupRequest]:
        """Pending requests, the one that expires first first."""
        found = await self._list_index(self._keys.pending, limit, newest_first=False)
        return [r for r in found if r.state is State.PENDING]

    async def due_for_expiry(self, now: datetime) -> list[str]:
        """Ids of pending requests whose deadline is at or before `now`."""
        with _unavailable_on_error():
            ids = await self._redis.zrangebyscore(self._keys.pending, "-inf", _epoch(now))
        return [str(i) for i in ids]

    async def stale_approved(self, older_than: datetime) -> list[BackupRequest]:
        """Requests claimed for the CSE call at or before `older_than` and still `approved`."""
        with _unavailable_on_error():
            ids = await self._redis.zrangebyscore(self._keys.approved, "-inf", _epoch(older_than))
        found = await self._load(self._keys.approved, [str(i) for i in ids])
        return [r for r in found if r.state is State.APPROVED]

    async def orphaned_approved(self, claimed_before: datetime) -> list[BackupRequest]:
        """Requests claimed for the CSE call at or before `claimed_before`, still `approved`,
        whose lease has lapsed: the replica making the call is gone."""
        with _unavailable_on_error():
            ids = [
                str(i)
                for i in await self._redis.zrangebyscore(
                    self._keys.approved, "-inf", _epoch(claimed_before)
                )
            ]
            if not ids:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for request_id in ids:
                    pipe.exists(self._keys.lease(request_id))
                held = await pipe.execute()
        lapsed = [i for i, h in zip(ids, held, strict=True) if not int(h)]
        found = await self._load(self._keys.approved, lapsed)
        return [r for r in found if r.state is State.APPROVED]

    async def recent_created(self, limit: int = 10) -> list[BackupRequest]:
        """The latest created requests, newest first (one read of the index, one pipeline)."""
        if limit <= 0:
            return []
        with _unavailable_on_error():
            ids = [str(i) for i in await self._redis.zrevrange(self._keys.created, 0, limit - 1)]
        if not ids:  # created before the index existed: found in the audit trail instead
            entries = await self.recent_audit(limit=300)
            ids = list(dict.fromkeys(e.request_id for e in entries if e.to_state is State.CREATED))[
                :limit
            ]
        found = await self._load(self._keys.created, ids)
        return [r for r in found if r.state is State.CREATED]

    async def audit(self, request_id: str) -> list[AuditEntry]:
        """The request's transitions, oldest first."""
        with _unavailable_on_error():
            entries = await self._redis.xrange(self._keys.audit(request_id))
        return [_audit_entry(entry_id, request_id, fields) for entry_id, fields in entries or ()]

    async def recent_audit(self, limit: int = 100) -> list[AuditEntry]:
        """The latest transitions of all requests, newest first."""
        with _unavailable_on_error():
            entries = await self._redis.xrevrange(self._keys.global_audit, count=limit)
        return [
            _audit_entry(entry_id, (fields or {}).get("request", ""), fields)
            for entry_id, fields in entries or ()
        ]

    # --- internals -------------------------------------------------------------------------

    async def _list_index(
        self, index: str, limit: int, *, newest_first: bool
    ) -> list[BackupRequest]:
        if limit <= 0:
            return []
        with _unavailable_on_error():
            if newest_first:
                ids = await self._redis.zrevrange(index, 0, limit - 1)
            else:
                ids = await self._redis.zrange(index, 0, limit - 1)
        return await self._load(index, [str(i) for i in ids])

    async def _load(self, index: str, ids: Sequence[str]) -> list[BackupRequest]:
        """Fetch the requests in one pipeline; drop ids whose record has expired."""
        if not ids:
            return []
        with _unavailable_on_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                for request_id in ids:
                    pipe.hget(self._keys.request(request_id), "doc")
                raws = await pipe.execute()
        found: list[BackupRequest] = []
        gone: list[str] = []
        for request_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                gone.append(request_id)
                continue
            try:
                found.append(BackupRequest.model_validate_json(raw))
            except ValidationError:
                log.exception("unreadable request record %s skipped", request_id)
        if gone:
            with _unavailable_on_error():
                await self._redis.zrem(index, *gone)
        return found

    def _result(self, request_id: str, result: Sequence[Any]) -> BackupRequest:
        status = str(result[0])
        if status == "missing":
            raise RequestNotFound(request_id)
        request = BackupRequest.model_validate_json(result[1])
        if status != "ok":
            raise TransitionRefused(request, Conflict(status))
        return request

    @staticmethod
    def _patch_json(patch: dict[str, Any]) -> str:
        try:
            checked = _Patch.model_validate(patch)
        except ValidationError as exc:
            raise ValueError(f"invalid request patch: {exc}") from None
        return checked.model_dump_json(exclude_unset=True)

    @staticmethod
    def _log(
        request: BackupRequest,
        actor: str,
        from_state: State | None,
        to_state: State,
        note: str,
    ) -> None:
        log.info(
            "request %s: %s -> %s by %s",
            request.id,
            from_state or "-",
            to_state,
            actor,
            extra={
                "event": "request.transition",
                "request_id": request.id,
                "actor": actor,
                "channel": request.channel,
                "from_state": str(from_state) if from_state else None,
                "to_state": str(to_state),
                "note": note,
                "version": request.version,
            },
        )


def _audit_entry(entry_id: Any, request_id: Any, fields: Any) -> AuditEntry:
    return AuditEntry(
        id=entry_id,
        request_id=request_id,
        actor=fields.get("actor", ""),
        at=datetime.fromisoformat(fields["at"]),
        from_state=State(fields["from"]) if fields.get("from") else None,
        to_state=State(fields["to"]),
        note=fields.get("note", ""),
    )


# Redis restarted (or a proxy dropped idle connections) while connections sat in the pool: a
# dead connection must be opened again before a command is sent on it, never after, so that no
# command is ever sent twice. Two checks: a connection whose socket the peer already closed is
# reopened when taken from the pool, and one idle for longer than this is PINGed first (the
# PING, and only the PING, is tried again on a fresh connection).
HEALTH_CHECK_AFTER = 1.0
_PING_RETRY = Retry(NoBackoff(), 1)


def _reconnecting(
    connection_class: type[aioredis.connection.AbstractConnection],
) -> type[aioredis.connection.AbstractConnection]:
    """`connection_class` (plain, TLS or unix socket) that reopens a dead connection first."""

    class Reconnecting(connection_class):  # type: ignore[valid-type,misc]
        async def connect(self) -> None:
            # The pool calls this before handing a connection out (its own check for a closed
            # socket is off while Redis maintenance notifications are enabled, the default).
            writer, reader = self._writer, self._reader
            if (writer is not None and writer.transport.is_closing()) or (
                reader is not None and (reader.at_eof() or reader.exception() is not None)
            ):
                await self.disconnect()
            await super().connect()

        async def check_health(self) -> None:
            if (
                self.health_check_interval
                and asyncio.get_running_loop().time() > self.next_health_check
            ):
                await _PING_RETRY.call_with_retry(
                    self._send_ping, self._ping_failed, with_failure_count=True
                )

    Reconnecting.__name__ = Reconnecting.__qualname__ = f"Reconnecting{connection_class.__name__}"
    return Reconnecting


def open_store(
    redis_url: str | None,
    prefix: str,
    *,
    socket_timeout: float = 2.0,
    history: timedelta = HISTORY,
) -> RequestStore:
    """A store on `redis_url` (redis://, rediss://, unix://), or embedded in-process when None."""
    if redis_url is None:
        log.warning(
            "REDIS_URL is not set: using an embedded in-process store. Pending approvals, "
            "history and audit are LOST on restart, and replicas cannot share it. "
            "Set REDIS_URL for anything but a trial.",
            extra={"event": "store.embedded"},
        )
        import fakeredis  # only here: a real Redis never loads it (~10 MB, 0.1 s)

        fake: aioredis.Redis = fakeredis.FakeAsyncRedis(
            server=fakeredis.FakeServer(), decode_responses=True
        )
        return RequestStore(fake, prefix, embedded=True, history=history)
    client: aioredis.Redis = aioredis.from_url(
        redis_url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=HEALTH_CHECK_AFTER,
        # No automatic retry: a script whose answer was lost may already have run, and running
        # it again would turn a successful approval into "already approved".
        retry=Retry(NoBackoff(), 0),
    )
    pool = client.connection_pool
    pool.connection_class = _reconnecting(pool.connection_class)
    log.info("request store: %s (prefix %r)", _redacted(redis_url), prefix)
    return RequestStore(client, prefix, history=history)
