"""Which version of each open request form the live preview last put on screen.

A preview update (`views.update` after a keystroke) can land between the moment the person's
client took its snapshot of the form and the moment their submission reaches the bot. The
submission then carries the older hash; Slack (and a strict client) may keep the preview instead
of the confirmation the submission answers with. So, before answering a submission, the bot
waits for a preview update of that form still under way and, when one landed after the
submitted version, puts the confirmation there itself (`views.update` with the newer hash).

Kept in process memory, briefly: it only matters for the few seconds around a submission, and
a preview and its form's submission normally reach the same replica within them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

KEEP_FOR = 600.0  # seconds a landed version is remembered
WAIT_FOR_UPDATE = 1.0  # seconds a submission waits for a preview update under way


class PreviewVersions:
    def __init__(self) -> None:
        self._landed: dict[str, tuple[str, float]] = {}  # view id -> (hash, monotonic time)
        self._busy: dict[str, set[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def updating(self, view_id: str) -> AsyncIterator[None]:
        """Around one preview update of `view_id`."""
        done = asyncio.Event()
        self._busy.setdefault(view_id, set()).add(done)
        try:
            yield
        finally:
            done.set()
            waiting = self._busy.get(view_id, set())
            waiting.discard(done)
            if not waiting:
                self._busy.pop(view_id, None)

    def landed(self, view_id: str, view_hash: str) -> None:
        """A preview update put version `view_hash` of `view_id` on screen."""
        now = time.monotonic()
        for old in [v for v, (_, at) in self._landed.items() if now - at > KEEP_FOR]:
            del self._landed[old]
        self._landed[view_id] = (view_hash, now)

    async def newer_than(
        self, view_id: str, submitted_hash: str | None, wait: float = WAIT_FOR_UPDATE
    ) -> str | None:
        """The hash of a preview version newer than the submitted one, if one landed (after
        waiting up to `wait` seconds for updates under way); else None. Forgets the view."""
        pending = list(self._busy.get(view_id, ()))
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await asyncio.gather(*(e.wait() for e in pending))
        landed = self._landed.pop(view_id, None)
        if landed is None or landed[0] == submitted_hash:
            return None
        return landed[0]
