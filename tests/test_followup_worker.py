"""The follow-up worker: the work after each acknowledgement runs in a child process.

Real processes throughout: `python -m bot run` with Redis starts its worker; the fakes stand in
for Slack and CSE. What is checked: the flow's follow-ups really run in the worker; a worker that
dies loses no click it had not started, and comes back; a serving process killed alone leaves the
worker to finish the CSE call under way; without the worker everything runs in one process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_bolt.request.async_request import AsyncBoltRequest

from bot import metrics
from bot.core.requests import State
from bot.slack.followups import HANDOFF, decode, encode
from bot.web import Busy
from bot.worker import IDLE, FollowUpWorker, Hold
from tests.fakes.slack_driver import SlackDriver
from tests.ops_support import BotProcess, Sample, value
from tests.slack_harness import (
    BOB,
    CAROL,
    CHANNEL,
    SIGNING_SECRET,
    approval_request_id,
)
from tests.test_operations import World, request_approval, wait_state
from tests.test_operations import world as world  # the same fixture: fakes and a key prefix


def _worker_pids(bot: BotProcess) -> list[int]:
    """The pids of the follow-up workers the bot started, in order (from its log)."""
    return [
        int(e["message"].split("pid ")[1].rstrip(")"))
        for e in bot.log_entries()
        if e.get("event") == "worker" and "pid" in e.get("message", "")
    ]


async def _metric(bot: BotProcess, name: str, at_least: float, **labels: str) -> float:
    """A counter once it reaches `at_least` (the worker reports its counts every second)."""
    for _ in range(100):
        found = value(await bot.metrics(), name, **labels)
        if found >= at_least:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name}{labels} never reached {at_least}")


async def test_the_flow_after_each_ack_runs_in_the_worker(world: World) -> None:
    bot = world.bot()
    await bot.wait_ready()
    pids = _worker_pids(bot)
    assert len(pids) == 1 and pids[0] != bot.process.pid  # type: ignore[union-attr]
    async with SlackDriver(bot.url, SIGNING_SECRET, world.fake) as driver:
        approval = await request_approval(driver, world.fake)
        await driver.click(BOB, "Approve", message=approval)
        await driver.wait_for_message("Backup policy created", channel=CHANNEL)
    # Request approval and Approve each went to the worker; nothing ran in the serving process.
    assert await _metric(bot, "cse_backup_followups_total", 2, where="worker") >= 2
    samples = await bot.metrics()
    assert value(samples, "cse_backup_followups_total", where="here") == 0
    # The worker's own counts reach /metrics: the claim and the CSE call were made there.
    assert await _metric(bot, "cse_backup_approvals_total", 1, outcome="claimed") == 1
    assert len(world.cse.create_requests()) == 1
    assert bot.terminate() == 0


async def test_a_dead_worker_loses_no_click_and_comes_back(world: World) -> None:
    bot = world.bot()
    await bot.wait_ready()
    async with SlackDriver(bot.url, SIGNING_SECRET, world.fake) as driver:
        first = await request_approval(driver, world.fake)
        [pid] = _worker_pids(bot)
        os.kill(pid, signal.SIGKILL)
        # Clicked while the worker is down: the serving process does it itself.
        await driver.click(BOB, "Approve", message=first)
        await wait_state(world.prefix, approval_request_id(first), State.CREATED)
        for _ in range(100):  # started again after a second
            if len(_worker_pids(bot)) == 2:
                break
            await asyncio.sleep(0.1)
        pids = _worker_pids(bot)
        assert len(pids) == 2 and pids[1] != pid
        second = await request_approval(driver, world.fake)
        await driver.click(CAROL, "Approve", message=second)
        await wait_state(world.prefix, approval_request_id(second), State.CREATED)
    samples = await bot.metrics()
    assert value(samples, "cse_backup_worker_restarts_total") == 1
    assert value(samples, "cse_backup_followups_total", where="here") >= 1
    exits = [e for e in bot.log_entries() if e.get("event") == "worker.exit"]
    assert len(exits) == 1 and exits[0]["level"] == "ERROR"
    assert len(world.cse.create_requests()) == 2
    assert bot.terminate() == 0


async def test_the_worker_finishes_the_call_when_the_serving_process_dies(world: World) -> None:
    bot = world.bot()
    await bot.wait_ready()
    async with SlackDriver(bot.url, SIGNING_SECRET, world.fake) as driver:
        approval = await request_approval(driver, world.fake)
        world.cse.delay = 2.0
        await driver.click(BOB, "Approve", message=approval)
        for _ in range(100):
            if world.cse.create_requests():
                break
            await asyncio.sleep(0.05)
        assert len(world.cse.create_requests()) == 1
        [pid] = _worker_pids(bot)
        assert bot.process is not None
        bot.process.send_signal(signal.SIGKILL)  # the serving process alone
        bot.process.wait(10)
        # Its input closed, the worker lets the call end, records it, says so, and exits.
        await wait_state(world.prefix, approval_request_id(approval), State.CREATED)
        await driver.wait_for_message("Backup policy created", channel=CHANNEL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the worker outlived its work")


async def _expired_by(bot: BotProcess, world: World) -> dict[str, object]:
    """Request approval, let it expire; the log line that says so."""
    async with SlackDriver(bot.url, SIGNING_SECRET, world.fake) as driver:
        approval = await request_approval(driver, world.fake)
    request_id = approval_request_id(approval)
    await wait_state(world.prefix, request_id, State.EXPIRED)
    for _ in range(50):
        for entry in bot.log_entries():
            if entry.get("event") == "request.expired" and entry.get("request_id") == request_id:
                return entry
        await asyncio.sleep(0.1)
    raise AssertionError("no request.expired line")


async def test_the_worker_sweeps_off_the_serving_process(world: World) -> None:
    bot = world.bot(APPROVAL_TTL="3s")
    await bot.wait_ready()
    assert (await _expired_by(bot, world)).get("role") == "worker"
    assert bot.terminate() == 0


async def test_without_the_worker_the_serving_process_sweeps(world: World) -> None:
    bot = world.bot(APPROVAL_TTL="3s", FOLLOW_UP_WORKER="false")
    await bot.wait_ready()
    assert "role" not in await _expired_by(bot, world)
    assert bot.terminate() == 0


async def test_without_the_worker_everything_runs_in_one_process(world: World) -> None:
    bot = world.bot(FOLLOW_UP_WORKER="false")
    await bot.wait_ready()
    assert _worker_pids(bot) == []
    async with SlackDriver(bot.url, SIGNING_SECRET, world.fake) as driver:
        approval = await request_approval(driver, world.fake)
        await driver.click(BOB, "Approve", message=approval)
        await driver.wait_for_message("Backup policy created", channel=CHANNEL)
    samples = await bot.metrics()
    assert value(samples, "cse_backup_followups_total", where="here") >= 2
    assert value(samples, "cse_backup_followups_total", where="worker") == 0
    assert value(samples, "cse_backup_approvals_total", outcome="claimed") == 1
    assert bot.terminate() == 0


# --- the parts, without the bot -----------------------------------------------------------------


def test_a_lazy_request_crosses_to_the_worker_unchanged() -> None:
    body = "payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%7D"
    request = AsyncBoltRequest(
        body=body,
        headers={"content-type": "application/x-www-form-urlencoded", "x-slack-signature": "v0=1"},
        context={HANDOFF: {"request": {"id": "bkp-abc123"}}},
    )
    request.lazy_only = True
    request.lazy_function_name = "on_approve"
    again = decode(encode(request))
    assert again.body == request.body == {"type": "block_actions", "user": {"id": "U1"}}
    assert again.raw_body == ""  # travels parsed: the worker does not undo the form again
    assert again.to_copyable().body == again.body  # a copy keeps it
    assert again.context["user_id"] == "U1"  # Bolt's context is built from the body as usual
    assert again.lazy_only and again.lazy_function_name == "on_approve"
    assert again.context[HANDOFF] == {"request": {"id": "bkp-abc123"}}
    assert "x-slack-signature" not in again.headers  # only what dispatching needs travels


async def test_follow_ups_a_dying_worker_never_started_run_here() -> None:
    # A "worker" that reads one frame, never says it started it, and dies.
    worker = FollowUpWorker([sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"])
    await worker.start()
    ran: list[str] = []
    assert worker.send(b'{"lazy": "a"}\n', lambda: ran.append("a"))
    assert worker.send(b'{"lazy": "b"}\n', lambda: ran.append("b"))
    for _ in range(100):
        if len(ran) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(ran) == ["a", "b"]
    assert not worker.running  # down: new work is refused (it then runs in the caller)
    assert not worker.send(b'{"lazy": "c"}\n', lambda: ran.append("c"))
    await worker.stop(timeout=5)


async def test_follow_ups_the_worker_started_are_not_run_twice() -> None:
    # A "worker" that says it started the first frame, then dies.
    script = (
        "import sys\n"
        "line = sys.stdin.readline()\n"
        "sys.stdout.write('{\"started\": ' + line.split(' ')[0] + '}\\n'); sys.stdout.flush()\n"
        "sys.stdin.readline(); sys.exit(3)\n"
    )
    worker = FollowUpWorker([sys.executable, "-c", script])
    await worker.start()
    ran: list[str] = []
    assert worker.send(b'{"lazy": "a"}\n', lambda: ran.append("a"))
    await asyncio.sleep(0.3)
    assert worker.send(b'{"lazy": "b"}\n', lambda: ran.append("b"))
    for _ in range(100):
        if ran:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert ran == ["b"]
    await worker.stop(timeout=5)


# --- holding follow-ups while acknowledgements queue ------------------------------------------


def test_one_request_at_a_time_is_never_held() -> None:
    hold = Hold(at_most=0.25)
    assert hold.offer(1, 1, "a", now=0.0) == [(1, "a")]
    assert hold.offer(2, 0, "b", now=0.1) == [(2, "b")]
    assert hold.wait(0.1) is None


def test_follow_ups_wait_while_others_queue_then_go_in_order() -> None:
    hold = Hold(at_most=0.25)
    assert hold.offer(1, 5, "a", now=0.0) == []
    assert hold.offer(2, 3, "b", now=0.05) == []
    assert hold.wait(0.05) == pytest.approx(0.2)
    # A follow-up from a quiet moment releases the held ones first, in order.
    assert hold.offer(3, 1, "c", now=0.1) == [(1, "a"), (2, "b"), (3, "c")]
    assert hold.wait(0.1) is None


def test_held_follow_ups_go_when_idle_or_after_at_most() -> None:
    hold = Hold(at_most=0.25)
    hold.offer(1, 4, "a", now=0.0)
    assert hold.due(0.2) == []
    assert hold.due(0.25) == [(1, "a")]
    hold.offer(2, 4, "b", now=1.0)
    assert hold.release() == [(2, "b")]  # the serving process said it is idle
    hold.offer(3, 4, "c", now=2.0)
    assert hold.offer(4, 9, "d", now=2.3) == [(3, "c"), (4, "d")]  # still busy, but too long


async def test_the_worker_is_told_the_load_and_when_the_serving_process_is_idle(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "lines"
    script = (
        f"import sys\nwith open({str(seen)!r}, 'wb') as f:\n    f.write(sys.stdin.buffer.read())\n"
    )
    busy = Busy()
    worker = FollowUpWorker([sys.executable, "-c", script], busy=busy)
    await worker.start()
    busy.enter()
    assert worker.send(b'{"lazy": "alone"}\n', lambda: None)
    busy.leave()  # only itself was in flight: no idle line needed
    await asyncio.sleep(5 * busy.quiet)
    busy.enter()
    busy.enter()
    assert worker.send(b'{"lazy": "crowded"}\n', lambda: None)
    busy.leave()
    busy.leave()
    await asyncio.sleep(5 * busy.quiet)  # idle once nothing new came for `quiet` seconds
    await worker.stop(timeout=5)
    lines = seen.read_bytes().splitlines()
    assert lines == [b'1 1 {"lazy": "alone"}', b'2 2 {"lazy": "crowded"}', IDLE.strip()]


async def test_busy_means_other_requests_now_or_a_moment_ago() -> None:
    busy = Busy(quiet=0.05)
    idle: list[float] = []
    busy.when_idle(lambda: idle.append(asyncio.get_running_loop().time()))
    busy.enter()
    assert not busy.crowded()  # the first request, alone
    busy.leave()
    await asyncio.sleep(0.1)
    assert len(idle) == 1  # nothing new for `quiet` seconds
    busy.enter()
    assert not busy.crowded()  # the one before started long ago
    busy.leave()
    busy.enter()
    assert busy.crowded()  # the one before started a moment ago
    busy.enter()
    assert busy.crowded()  # two at once
    busy.leave()
    busy.leave()
    ended = asyncio.get_running_loop().time()
    await asyncio.sleep(0.02)
    assert len(idle) == 1  # not yet: the last start was too recent
    await asyncio.sleep(0.1)
    assert len(idle) == 2 and idle[1] - ended >= 0.04


def _rendered() -> list[Sample]:
    text, _ = metrics.render()
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    ]


def test_the_workers_counts_add_up_and_its_gauges_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "WORKER", metrics.WorkerSamples())
    errors = "cse_backup_redis_errors_total"
    pending = "cse_backup_pending_requests"
    metrics.set_pending(7)
    before = value(_rendered(), errors)
    metrics.WORKER.update(
        [["cse_backup_redis_errors", errors, {}, 2.0], [pending, pending, {}, 3.0]]
    )
    assert value(_rendered(), errors) == before + 2  # counts: this process's and the worker's
    assert value(_rendered(), pending) == 3  # the worker sweeps: its gauge stands for the replica
    metrics.WORKER.update([["cse_backup_redis_errors", errors, {}, 2.0]])  # a report without it
    assert value(_rendered(), pending) == 3  # (a new worker before its first sweep)
    metrics.WORKER.fold()  # the worker exited
    assert value(_rendered(), errors) == before + 2  # its counts are kept
    assert value(_rendered(), pending) == 3  # and its last gauge, until a sweep here
    metrics.set_pending(5)
    assert value(_rendered(), pending) == 5  # this process swept: its own gauge again
    assert [pending, pending, {}, 5.0] in metrics.own_samples()  # what a worker would report
