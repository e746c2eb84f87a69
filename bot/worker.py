"""The follow-up worker: a child process that runs what comes after Slack's acknowledgement.

`cse-backup-bot run` (with Redis) starts one: the serving process answers Slack (signature,
ack function, the answer) and sends each lazy function, with its request, down the worker's
stdin as one line; the worker dispatches it again through its own Bolt app, built from the same
settings over the same Redis, which runs just that lazy function (Bolt's lazy-only requests).
The CSE call, the messages, opening modals: all of it happens here, on the other core, at a
lower CPU priority, so a burst of approvals never delays the next acknowledgement.

What the parent can rely on:
- the worker says on its stdout when it starts each follow-up (`{"started": n}`); if it dies,
  the parent runs every follow-up it had not started itself, so no click is lost, and starts a
  new worker (after 1 s, then longer while it keeps failing);
- it sends its metrics every second (`{"metrics": [...]}`), which the parent adds to its own on
  /metrics;
- on end of input (the parent shutting down) or SIGTERM it stops reading, lets the follow-ups
  under way end (the CSE calls among them, bounded like the parent's), and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from bot import metrics
from bot.settings import Settings
from bot.web import Busy

log = logging.getLogger("bot.worker")

# The worker's CPU priority below the serving process (nice(2) steps): acknowledgements first.
NICE = 10
RESTART_DELAYS = (1.0, 2.0, 5.0, 15.0, 30.0)
# A worker this far behind (bytes not yet read from its stdin) gets no more work: it runs here.
MAX_BACKLOG = 16 * 1024 * 1024
METRICS_EVERY = 1.0
# While the serving process is busy with other Slack requests, the worker holds new follow-ups
# until it is idle, for at most this long: acknowledgements have a 3 s deadline, follow-ups none.
HOLD_AT_MOST = 0.25
IDLE = b"idle\n"
SHUTDOWN_GRACE = 5.0


class FollowUpWorker:
    """The worker process, seen from the serving process: a `Sink` for `FollowUps`."""

    def __init__(self, command: list[str] | None = None, busy: Busy | None = None) -> None:
        self._command = command or [sys.executable, "-m", "bot", "worker"]
        self._busy = busy
        self._told_busy = False  # a frame went out while others queued: say when that ends
        if busy is not None:
            busy.when_idle(self._idle)
        self._proc: asyncio.subprocess.Process | None = None
        self._seq = 0
        # Sent, not yet started by the worker: run here if it dies (seq -> run it here).
        self._unstarted: dict[int, Callable[[], None]] = {}
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None
        self._failures = 0
        self.restarts = 0
        self.pid: int | None = None

    # --- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self.pid = self._proc.pid
        self._watcher = asyncio.create_task(self._watch(self._proc))
        log.info("follow-up worker started (pid %d)", self._proc.pid, extra={"event": "worker"})

    @property
    def running(self) -> bool:
        proc = self._proc
        return (
            proc is not None
            and proc.returncode is None
            and proc.stdin is not None
            and not proc.stdin.is_closing()
        )

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            self._heard(line)
        code = await proc.wait()
        metrics.WORKER.fold()
        lost = self._unstarted
        self._unstarted = {}
        if self._stopping:
            for run_here in lost.values():
                run_here()
            return
        self._failures += 1
        metrics.WORKER_RESTARTS.inc()
        log.error(
            "the follow-up worker exited (code %s); %d follow-up(s) it had not started run in "
            "this process, and so does new work until it is back",
            code,
            len(lost),
            extra={"event": "worker.exit", "code": code},
        )
        for run_here in lost.values():
            run_here()
        delay = RESTART_DELAYS[min(self._failures, len(RESTART_DELAYS)) - 1]
        await asyncio.sleep(delay)
        if not self._stopping:
            with contextlib.suppress(OSError):
                await self.start()
                self.restarts += 1

    def _heard(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("the follow-up worker wrote something that is not JSON to its stdout")
            return
        if "started" in message:
            self._unstarted.pop(int(message["started"]), None)
            self._failures = 0
        elif "metrics" in message:
            metrics.WORKER.update(message["metrics"])

    # --- Sink --------------------------------------------------------------------------------

    def send(self, frame: bytes, run_here: Callable[[], None]) -> bool:
        if not self.running:
            return False
        assert self._proc is not None and self._proc.stdin is not None
        if self._proc.stdin.transport.get_write_buffer_size() > MAX_BACKLOG:
            return False
        self._seq += 1
        self._unstarted[self._seq] = run_here
        load = 2 if self._busy is not None and self._busy.crowded() else 1
        self._told_busy = self._told_busy or load > 1
        self._proc.stdin.write(b"%d %d " % (self._seq, load) + frame)
        metrics.FOLLOWUPS.labels("worker").inc()
        return True

    def _idle(self) -> None:
        """No Slack request is being answered any more: the worker may stop holding its work."""
        if self._told_busy and self.running:
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(IDLE)
        self._told_busy = False

    async def stop(self, timeout: float) -> bool:
        """End of input: the worker finishes what it has (up to `timeout` s). True if it did."""
        self._stopping = True
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            log.error("the follow-up worker did not finish in %.0f s; stopping it", timeout)
            proc.kill()
            await proc.wait()
            return False
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        return True


class Hold:
    """Which follow-ups the worker starts now, and which wait for the serving process to be idle.

    A follow-up sent while the serving process was busy with other Slack requests (`load` above
    1, see bot.web.Busy) waits, with every one after it, until the serving process says it is
    idle, a follow-up arrives from a quiet moment, or the oldest has waited HOLD_AT_MOST
    seconds. Order is kept. A request on its own is never held."""

    def __init__(self, at_most: float = HOLD_AT_MOST) -> None:
        self.at_most = at_most
        self._held: list[tuple[int, Any]] = []
        self._since = 0.0

    def offer(self, seq: int, load: int, item: Any, now: float) -> list[tuple[int, Any]]:
        if load <= 1 and not self._held:
            return [(seq, item)]
        if not self._held:
            self._since = now
        self._held.append((seq, item))
        if load <= 1 or now - self._since >= self.at_most:
            return self.release()
        return []

    def release(self) -> list[tuple[int, Any]]:
        ready, self._held = self._held, []
        return ready

    def due(self, now: float) -> list[tuple[int, Any]]:
        return self.release() if self._held and now - self._since >= self.at_most else []

    def wait(self, now: float) -> float | None:
        """Seconds until the held ones are due (None: nothing held)."""
        return max(0.0, self._since + self.at_most - now) if self._held else None


# --- the worker process itself ---------------------------------------------------------------


def _snapshot() -> list[list[Any]]:
    return metrics.own_samples()


async def _report(out: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    """One line to the parent; nothing when it is gone (the worker then finishes alone)."""
    if out.transport.is_closing():
        return
    with contextlib.suppress(OSError):
        out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")


async def work(settings: Settings) -> None:
    """The worker's life: build the same app (worker role), then dispatch what stdin brings."""
    from bot.app import build_bot
    from bot.iam import token_provider_from_settings
    from bot.runtime import background, cse_client, warm_up
    from bot.slack.followups import decode
    from bot.store import open_store

    with contextlib.suppress(OSError):
        os.nice(NICE)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C reaches the whole process group: the parent decides, and closes our input.
    loop.add_signal_handler(signal.SIGINT, lambda: None)

    store = open_store(settings.redis_url, settings.redis_prefix)
    tokens = token_provider_from_settings(settings)
    cse = cse_client(settings, tokens)
    bot = build_bot(settings, store=store, cse=cse, tokens=tokens, worker=True)
    warming = asyncio.create_task(warm_up(tokens))
    # The sweep (expiry, stuck calls, reminders) runs here while this worker runs: at nice 10,
    # off the serving process's CPU. The serving process sweeps whenever the worker is down.
    stop_sweeping = asyncio.Event()
    sweeper = asyncio.create_task(background(bot.services.flow, stop_sweeping))

    reader = asyncio.StreamReader(limit=MAX_BACKLOG)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    out = asyncio.StreamWriter(transport, protocol, None, loop)
    tasks: set[asyncio.Task[Any]] = set()

    async def report_metrics() -> None:
        last: list[list[Any]] = []
        while True:
            current = _snapshot()
            if current != last:
                await _report(out, {"metrics": current})
                last = current
            await asyncio.sleep(METRICS_EVERY)

    async def start(ready: list[tuple[int, Any]]) -> None:
        for seq, request in ready:
            await _report(out, {"started": seq})
            task = asyncio.create_task(bot.app.async_dispatch(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    hold = Hold()
    reporter = asyncio.create_task(report_metrics())
    stopping = asyncio.create_task(stop.wait())
    reading: asyncio.Future[bytes] | None = None
    try:
        while True:
            if reading is None:
                reading = asyncio.ensure_future(reader.readline())
            waiting: set[asyncio.Future[Any]] = {reading, stopping}
            await asyncio.wait(
                waiting,
                timeout=hold.wait(loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stopping.done():
                break
            if not reading.done():  # the held follow-ups are due
                await start(hold.due(loop.time()))
                continue
            line, reading = reading.result(), None
            if not line:
                break
            if line == IDLE:
                await start(hold.release())
                continue
            seq, load, frame = line.split(b" ", 2)
            try:
                request = decode(frame)
            except (ValueError, KeyError, TypeError):
                log.error("the follow-up worker got a frame it cannot read; skipped")
                continue
            await start(hold.offer(int(seq), int(load), request, loop.time()))
    finally:
        if reading is not None and not reading.done():
            reading.cancel()
        await start(hold.release())  # what was held is done before exiting, like the rest
        grace = settings.cse_timeout + SHUTDOWN_GRACE
        log.info(
            "follow-up worker stopping: %d follow-up(s) and %d CSE call(s) under way",
            len(tasks),
            bot.services.flow.in_flight,
            extra={"event": "worker.shutdown"},
        )
        # It sweeps while it finishes (the serving process counts on it until it exits).
        if tasks:
            await asyncio.wait(set(tasks), timeout=grace)
        stop_sweeping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sweeper, timeout=SHUTDOWN_GRACE)
        bot.services.flow.stop_accepting()
        await bot.services.flow.drain(timeout=grace)
        await bot.followups.drain(timeout=grace)
        reporter.cancel()
        stopping.cancel()
        warming.cancel()
        with contextlib.suppress(Exception):
            await _report(out, {"metrics": _snapshot()})
            await out.drain()
        await bot.aclose()
        await cse.aclose()
        await tokens.aclose()
        await store.aclose()


def main(settings: Settings) -> int:
    from bot.logs import configure_logging

    configure_logging(settings, role="worker")
    asyncio.run(work(settings))
    return 0
