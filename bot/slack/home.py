"""The App Home tab: what waits for the viewer's approval (with the same Approve and Reject
buttons as the approval message), the viewer's own requests, and the recently created policies.

It is built from the store, never from messages, and published:
- whenever the viewer opens the tab (`app_home_opened`);
- after each change to a request, for those who opened their Home tab within `VIEWER_WINDOW`
  (at most `MAX_VIEWERS` of them, the latest first) and whom the change concerns: the requester,
  everyone who acted on it (approvers, the person who rejected), and those who may approve it.
  A created policy concerns every such recent viewer, for "Recently created policies". Someone
  who has not opened the tab recently gets nothing: opening it builds it afresh from the store.
  (Who opened it comes with each change from the store, so finding them costs no extra read.)

Republishing runs in the background, one worker per process: a burst of changes (approved, then
created, say) is coalesced, and every publish reads the store afresh, so the last publish for a
user shows what the store holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.approval import Policy, decide_approve, mention
from bot.core.requests import BackupRequest, State
from bot.slack.blocks import (
    Json,
    actions,
    button,
    context,
    divider,
    header,
    section,
    slack_date,
)
from bot.slack.escape import code, escape
from bot.slack.ids import Action
from bot.slack.messages import request_line
from bot.store import RequestStore, StoreUnavailable

log = logging.getLogger("bot.slack.home")

MAX_WAITING = 10
MAX_MINE = 10
MAX_CREATED = 10
MAX_BLOCKS = 100  # Slack's limit for a Home tab
VIEWER_WINDOW = timedelta(hours=24)
MAX_VIEWERS = 25
NOTICE_TTL = 30.0

GroupsOf = Callable[[str], Awaitable[frozenset[str]]]


def _engine(request: BackupRequest) -> str:
    if request.engine_name and request.engine_name != request.engine_id:
        return escape(request.engine_name)
    return code(request.engine_id)


def _waiting_text(request: BackupRequest) -> str:
    lines = [
        f"{code(request.id)} from {mention(request.requester)} for {_engine(request)}: "
        f"{code(request.schedule)} ({escape(request.timezone)})",
    ]
    numbers = []
    if request.reserve is not None:
        numbers.append(f"retention {request.reserve} days")
    if request.max_files is not None:
        numbers.append(f"max files {request.max_files}")
    if numbers:
        lines.append(", ".join(numbers))
    if request.required_approvals > 1:
        got = len(request.approvals)
        who = ", ".join(mention(u) for u in request.approved_by)
        lines.append(
            f"{got} of {request.required_approvals} approvals" + (f": {who}" if who else "")
        )
    if request.reason:
        lines.append(f"Reason: {escape(request.reason)}")
    lines.append(f"Expires {slack_date(request.expires_at)}")
    return "\n".join(lines)


def _created_line(request: BackupRequest) -> str:
    policy = request.policy or {}
    policy_id = str(policy.get("id") or "?")
    approvers = ", ".join(mention(u) for u in request.approved_by) or "?"
    return (
        f"{code(policy_id)} · {_engine(request)} · {code(request.schedule)} · asked by "
        f"{mention(request.requester)}, approved by {approvers} · "
        f"{slack_date(request.updated_at)}"
    )


def home_view(
    waiting: list[BackupRequest],
    mine: list[BackupRequest],
    created: list[BackupRequest],
    *,
    notice: str | None = None,
) -> dict[str, Any]:
    """The Home tab. `notice` (mrkdwn, already safe) is shown on top: the answer to a click
    made in the tab, since an ephemeral message would land in a channel the viewer is not
    looking at."""
    blocks: list[Json] = []
    if notice:
        blocks += [section(notice), divider()]
    blocks.append(header("Waiting for your approval"))
    if not waiting:
        blocks.append(section("_Nothing waits for you._"))
    for request in waiting[:MAX_WAITING]:
        blocks.append(section(_waiting_text(request)))
        blocks.append(
            actions(
                f"home-{request.id}",
                button("Approve", Action.APPROVE, request.id, "primary"),
                button("Reject", Action.REJECT, request.id, "danger"),
            )
        )
    if len(waiting) > MAX_WAITING:
        blocks.append(
            context(f"{len(waiting) - MAX_WAITING} more wait; the oldest expire first above.")
        )

    blocks += [divider(), header("Your requests")]
    if not mine:
        blocks.append(section("_None yet: `/cse-backup create` asks for a backup policy._"))
    for request in mine[:MAX_MINE]:
        block = section(request_line(request))
        if request.state is State.PENDING:
            block["accessory"] = button("Cancel", Action.CANCEL_REQUEST, request.id)
        blocks.append(block)

    blocks += [divider(), header("Recently created policies")]
    if not created:
        blocks.append(section("_No policy created yet._"))
    else:
        blocks.append(section("\n".join(_created_line(r) for r in created[:MAX_CREATED])))
    blocks.append(context("`/cse-backup help` lists every command."))
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}


@dataclass(frozen=True)
class _Shared:
    """What every viewer's tab shows alike, read once per round of publishes."""

    pending: list[BackupRequest]
    created: list[BackupRequest]


class AppHome:
    def __init__(
        self,
        client: AsyncWebClient,
        store: RequestStore,
        policy: Policy,
        groups_of: GroupsOf,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._store = store
        self._policy = policy
        self._groups_of = groups_of
        self._clock = clock
        self._dirty: set[str] = set()
        self._changed: list[BackupRequest] = []
        self._worker: asyncio.Task[None] | None = None
        # The answer to a click in the tab, kept briefly so that a republish racing it (the
        # change the click made) shows it too: user -> (notice, monotonic deadline).
        self._notices: dict[str, tuple[str, float]] = {}

    def __deepcopy__(self, memo: dict[int, object]) -> AppHome:
        # Bolt deep-copies a request's context for its lazy listeners; the context holds this
        # service (for the error handler), which is shared, never copied.
        return self

    # --- building and publishing -------------------------------------------------------------

    async def _shared(self) -> _Shared:
        pending = await self._store.list_pending(limit=100)
        created = await self._store.recent_created(limit=MAX_CREATED)
        return _Shared(pending=pending, created=created)

    def _notice(self, user: str) -> str | None:
        kept = self._notices.get(user)
        if kept is None:
            return None
        if time.monotonic() > kept[1]:
            del self._notices[user]
            return None
        return kept[0]

    async def view(self, user: str, shared: _Shared | None = None) -> dict[str, Any]:
        """`user`'s Home tab, built from the store now."""
        shared = shared or await self._shared()
        groups = await self._groups_of(user)
        now = self._clock()
        waiting = [
            r
            for r in shared.pending
            if r.requester != user and decide_approve(self._policy, r, user, groups, now).allowed
        ]
        mine = await self._store.list_user(user, limit=MAX_MINE)
        return home_view(waiting, mine, shared.created, notice=self._notice(user))

    async def publish(self, user: str, notice: str | None = None) -> None:
        """Build and publish `user`'s tab now (raises what the store or Slack raise), with
        `notice` on top (kept for NOTICE_TTL seconds, through any republish)."""
        if notice:
            self._notices[user] = (notice, time.monotonic() + NOTICE_TTL)
        await self._client.views_publish(user_id=user, view=await self.view(user))

    async def opened(self, user: str) -> None:
        """`user` opened the tab: remember them as a viewer, and show it."""
        try:
            await self._store.note_home_viewer(user, self._clock())
        except StoreUnavailable:
            log.warning("home viewer %s not recorded (the store is not answering)", user)
        await self.publish(user)

    # --- republishing after changes ----------------------------------------------------------

    def refresh(self, users: Iterable[str]) -> None:
        """Republish these users' tabs soon (in the background)."""
        self._dirty.update(u for u in users if u)
        self._wake()

    def changed(self, request: BackupRequest) -> None:
        """`request` changed: republish the tabs of the people it concerns (in the background)."""
        self._changed.append(request)
        self._wake()

    def _wake(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())

    async def aclose(self) -> None:
        """Stop republishing (shutdown); a publish under way is cancelled."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _drain(self) -> None:
        while self._dirty or self._changed:
            changed, self._changed = self._changed, []
            users, self._dirty = self._dirty, set()
            try:
                if changed:
                    users |= await self._concerned(changed)
                if users:
                    shared = await self._shared()
                    await asyncio.gather(*(self._publish_quietly(u, shared) for u in users))
            except Exception:
                log.exception("Home tabs not republished (they are rebuilt when next opened)")

    async def _publish_quietly(self, user: str, shared: _Shared) -> None:
        try:
            view = await self.view(user, shared=shared)
            await self._client.views_publish(user_id=user, view=view)
        except Exception as exc:
            log.warning("Home tab of %s not republished: %s", user, type(exc).__name__)

    async def _concerned(self, changed: list[BackupRequest]) -> set[str]:
        """The recent viewers of the tab whom `changed` concerns."""
        involved: set[str] = set()
        for request in changed:
            involved.add(request.requester)
            involved.update(request.approved_by)
            if request.decided_by and request.decided_by[:1] in {"U", "W"}:
                involved.add(request.decided_by)
        viewers = await self._store.home_viewers(self._clock() - VIEWER_WINDOW, limit=MAX_VIEWERS)
        created = any(r.state is State.CREATED for r in changed)
        users: set[str] = set()
        for viewer in viewers:
            if created or viewer in involved:
                users.add(viewer)
                continue
            for request in changed:
                if await self._may_approve(viewer, request):
                    users.add(viewer)
                    break
        return users

    async def _may_approve(self, user: str, request: BackupRequest) -> bool:
        """Could `user` approve `request` (so it is, or was, in their waiting list)?"""
        if user == request.requester:
            return False
        approvers = self._policy.approvers
        if not approvers or user in approvers:
            return True
        return not approvers.isdisjoint(await self._groups_of(user))
