"""Operating the bot, through its real doors: `python -m bot run` as a process, its health,
readiness and metrics over HTTP, its log lines, SIGTERM, several replicas on one Redis, and the
three kinds of REDIS_URL. Slack and CSE are the local fakes; Redis is the real one on 6379 (a
prefix per test) or a redis-server of the test's own."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from bot.core.requests import State
from bot.store import open_store
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_driver import SlackDriver
from tests.ops_support import BotProcess, RedisProcess, bot_env, free_port, value
from tests.slack_harness import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CAROL,
    CHANNEL,
    PROD_ID,
    REDIS_URL,
    SIGNING_SECRET,
    approval_request_id,
    drop_prefix,
    new_approval_message,
)

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'
APP_TOKEN = "xapp-ops-app-token-9876"
QUIET = "C0NOTINVIT"  # a channel the bot was never invited to


@dataclass
class World:
    fake: FakeSlack
    cse: FakeCse
    prefix: str
    workdir: Path
    bots: list[BotProcess] = field(default_factory=list)

    def bot(
        self, redis_url: str = REDIS_URL, *, without: tuple[str, ...] = (), **extra: str
    ) -> BotProcess:
        env = bot_env(
            self.fake,
            self.cse,
            redis_url=redis_url,
            prefix=self.prefix,
            port=free_port(),
            **extra,
        )
        for name in without:
            del env[name]
        bot = BotProcess(env, self.workdir).start()
        self.bots.append(bot)
        return bot

    def socket_bot(self, redis_url: str = REDIS_URL, **extra: str) -> BotProcess:
        """Socket Mode: the app token set, no signing secret (nothing to verify)."""
        return self.bot(
            redis_url, without=("SLACK_SIGNING_SECRET",), SLACK_APP_TOKEN=APP_TOKEN, **extra
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    for user in (ALICE, BOB, CAROL):
        fake.add_user(user)
    fake.start()
    cse = FakeCse().start()
    world = World(fake, cse, f"test-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield world
    finally:
        for bot in world.bots:
            bot.kill()
        await drop_prefix(world.prefix)
        cse.stop()
        fake.stop()


async def request_approval(
    driver: SlackDriver, fake: FakeSlack, channel: str = CHANNEL, user: str = ALICE
) -> Message:
    """The quick path up to the approval message in `channel`."""
    before = {m.ts for m in fake.messages(channel)}
    await driver.command(user, channel, QUICK)
    confirmation = await driver.wait_for_ephemeral(user, "Request approval")
    await driver.click(user, "Request approval", message=confirmation)
    return await new_approval_message(fake, channel, before)


async def wait_state(
    prefix: str, request_id: str, state: State, redis_url: str = REDIS_URL
) -> None:
    store = open_store(redis_url, prefix)
    try:
        for _ in range(400):
            request = await store.get(request_id)
            if request is not None and request.state is state:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{request_id} never became {state}: {request}")
    finally:
        await store.aclose()


async def until(condition: Callable[[], Any], what: str) -> Any:
    for _ in range(400):
        found = condition()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


# --- metrics and logs of a real flow ---------------------------------------------------------


async def test_http_flow_is_measured_and_logged_without_ids_in_labels(world: World) -> None:
    fake, cse = world.fake, world.cse
    fake.not_in_channel.add(QUIET)
    bot = world.bot(LOG_FORMAT="json")
    ready = await bot.wait_ready()
    assert ready == {"status": "ok", "checks": {"redis": "ok"}}
    request_ids = []
    async with SlackDriver(bot.url, SIGNING_SECRET, fake) as driver:
        # Created: a refused self-approval first, then the approver.
        first = await request_approval(driver, fake)
        request_ids.append(approval_request_id(first))
        await driver.click(ALICE, "Approve", message=first)
        await bot.wait_metric("cse_backup_approvals_total", outcome="refused")
        await driver.click(BOB, "Approve", message=first)
        await driver.wait_for_message("Backup policy created", channel=CHANNEL)

        # Refused by CSE.
        cse.respond_next(400, {"error_code": "SVCSTG.00501134", "error_msg": "bad", "detail": ""})
        second = await request_approval(driver, fake)
        request_ids.append(approval_request_id(second))
        await driver.click(BOB, "Approve", message=second)
        await wait_state(world.prefix, request_ids[1], State.FAILED)

        # Left waiting: the pending gauge sees it on the next sweep.
        third = await request_approval(driver, fake)
        request_ids.append(approval_request_id(third))
        await bot.wait_metric("cse_backup_pending_requests", 1)

        # Slack refuses the approval post: the bot is not in that channel.
        await driver.command(ALICE, QUIET, QUICK)
        confirmation = await driver.wait_for_ephemeral(ALICE, "Request approval")
        await driver.click(ALICE, "Request approval", message=confirmation)
        await bot.wait_metric(
            "cse_backup_slack_api_errors_total", method="chat.postMessage", error="not_in_channel"
        )

        # A request that is not from Slack (no signature).
        forged = await driver.raw(
            urlencode({"command": "/cse-backup", "user_id": "U0FORGER", "text": "help"}),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert forged.status_code == 401

    samples = await bot.metrics()

    def total(name: str, **labels: str) -> float:
        return value(samples, name, **labels)

    assert total("cse_backup_interactions_total", kind="command", outcome="received") == 4
    assert total("cse_backup_interactions_total", outcome="bad_signature") == 1
    assert total("cse_backup_interactions_total", kind="block_actions", outcome="refused") >= 1
    assert total("cse_backup_requests_total", outcome="submitted") == 4
    assert total("cse_backup_requests_total", outcome="created") == 1
    assert total("cse_backup_requests_total", outcome="failed") == 1
    assert total("cse_backup_requests_total", outcome="cancelled") == 1  # the unposted one
    assert total("cse_backup_approvals_total", outcome="claimed") == 2
    assert total("cse_backup_approvals_total", outcome="refused") == 1
    create = {"operation": "create_backup_policy"}
    assert total("cse_backup_cse_call_seconds_count", **create) == 2
    assert total("cse_backup_cse_responses_total", status="200", **create) == 1
    assert total("cse_backup_cse_responses_total", status="400", **create) == 1
    assert total("cse_backup_slack_ack_seconds_count", kind="command") == 4
    assert total("cse_backup_slack_ack_seconds_count", kind="block_actions") >= 6
    assert total("cse_backup_pending_requests") == 1
    assert total("cse_backup_redis_errors_total") == 0
    assert total("cse_backup_unhandled_errors_total") == 0

    # Low cardinality: no user, channel, request, engine or policy id in any label value.
    ids = {ALICE, BOB, CAROL, CHANNEL, QUIET, PROD_ID, "U0FORGER", *request_ids}
    ids |= {str(p["id"]) for p in cse.policies}
    labels = {v for s in samples if s.name.startswith("cse_backup_") for v in s.labels.values()}
    assert labels and not labels & ids
    for label in labels:
        assert not re.fullmatch(r"[UWCGDS][A-Z0-9]{6,}|bkp-\w+|[0-9a-f-]{20,}", label), label

    text = bot.log_path.read_text()
    entries = bot.log_entries()  # every line of output is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    first_id = request_ids[0]
    moves = [
        (e["from_state"], e["to_state"])
        for e in entries
        if e.get("event") == "request.transition" and e["request_id"] == first_id
    ]
    assert moves == [(None, "pending"), ("pending", "approved"), ("approved", "created")]
    assert all(
        e["channel"] == CHANNEL
        for e in entries
        if e.get("event") == "request.transition" and e["request_id"] in request_ids
    )
    outcomes = {
        (e["request_id"], e["outcome"], e["user"], e["channel"])
        for e in entries
        if str(e.get("event", "")).startswith("request.") and "outcome" in e
    }
    assert (first_id, "submitted", ALICE, CHANNEL) in outcomes
    assert (first_id, "refused", ALICE, CHANNEL) in outcomes
    assert (first_id, "claimed", BOB, CHANNEL) in outcomes
    assert (first_id, "created", "cse", CHANNEL) in outcomes
    assert (request_ids[1], "failed", "cse", CHANNEL) in outcomes
    acks = [e for e in entries if e.get("event") == "slack.ack"]
    assert {(e["kind"], e["user"], e["channel"]) for e in acks} >= {
        ("command", ALICE, CHANNEL),
        ("block_actions", BOB, CHANNEL),
    }
    assert any(e.get("event") == "slack.bad_signature" for e in entries)
    assert "will be unused" not in text  # Bolt's start-up warning about the token, expected here
    # No secrets, no payloads.
    for secret in (BOT_TOKEN, SIGNING_SECRET, cse.static_token or "-"):
        assert secret not in text
    for payload_part in ("trigger_id", "/hooks/", '"blocks"', "U0FORGER"):
        assert payload_part not in text
    assert bot.terminate() == 0


async def test_console_log_format_is_for_people(world: World) -> None:
    bot = world.bot(LOG_FORMAT="console")
    await bot.wait_ready()
    assert bot.terminate() == 0
    lines = bot.log_lines()
    assert lines and not any(line.startswith("{") for line in lines)
    start = next(line for line in lines if "serving on port" in line)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO +bot\.runtime: ", start)
    assert "mode=http" in start


# --- readiness ---------------------------------------------------------------------------------


async def test_readyz_names_redis_while_it_is_stopped(world: World) -> None:
    redis = RedisProcess().start()
    try:
        bot = world.bot(redis.url)
        assert (await bot.wait_ready())["checks"] == {"redis": "ok"}
        redis.stop()
        down = await bot.wait_ready(503)
        assert down["status"] == "unavailable" and down["failed"] == ["redis"]
        assert down["checks"]["redis"].startswith("not answering")
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{bot.url}/healthz")).status_code == 200  # alive all along
        async with SlackDriver(bot.url, SIGNING_SECRET, world.fake) as driver:
            await driver.command(ALICE, CHANNEL, "list")
            await driver.wait_for_ephemeral(ALICE, "not answering")
        assert await bot.wait_metric("cse_backup_redis_errors_total") >= 1
        redis.start()
        assert (await bot.wait_ready())["checks"] == {"redis": "ok"}
        assert bot.terminate() == 0
    finally:
        redis.remove()


async def test_socket_mode_is_ready_only_while_connected(world: World) -> None:
    bot = world.socket_bot()
    await world.fake.async_wait_for_sockets(1)
    ready = await bot.wait_ready()
    assert ready["checks"] == {"redis": "ok", "socket_mode": "ok"}
    async with SlackDriver.over_socket(world.fake) as driver:
        approval = await request_approval(driver, world.fake)
        await driver.click(BOB, "Approve", message=approval)
        await driver.wait_for_message("Backup policy created", channel=CHANNEL)
    samples = await bot.metrics()
    assert value(samples, "cse_backup_slack_ack_seconds_count", kind="command") == 1
    assert value(samples, "cse_backup_slack_ack_seconds_count", kind="block_actions") >= 2
    assert any(e.get("event") == "slack.ack" for e in bot.log_entries())

    world.fake.stop()  # Slack goes away
    down = await bot.wait_ready(503)
    assert down["failed"] == ["socket_mode"]
    assert down["checks"]["socket_mode"].startswith("not connected to Slack")
    assert bot.terminate() == 0


async def test_socket_mode_with_a_wrong_app_token_says_so_and_still_stops(world: World) -> None:
    bot = world.bot(SLACK_APP_TOKEN="xapp-not-the-right-one-4242")
    # Not ready from the start; the reason appears once Slack has refused the token.
    down = await bot.wait_ready(503, saying="invalid_auth")
    assert down["failed"] == ["socket_mode"]
    assert "apps.connections.open answered invalid_auth" in down["checks"]["socket_mode"]
    await bot.wait_metric(
        "cse_backup_slack_api_errors_total", method="apps.connections.open", error="invalid_auth"
    )
    # SIGTERM does not wait for a connection that keeps failing.
    assert bot.terminate(timeout=20) == 0
    assert "xapp-not-the-right-one-4242" not in bot.log_path.read_text()


# --- graceful shutdown -------------------------------------------------------------------------


async def test_sigterm_refuses_new_approvals_and_finishes_the_call_under_way(
    world: World,
) -> None:
    fake, cse = world.fake, world.cse
    bot = world.bot()
    await bot.wait_ready()
    async with SlackDriver(bot.url, SIGNING_SECRET, fake) as driver:
        first = await request_approval(driver, fake)
        second = await request_approval(driver, fake)
        cse.delay = 6.0  # long enough for what follows; the call is then let finish
        await driver.click(BOB, "Approve", message=first)
        await until(lambda: len(cse.create_requests()) == 1, "the CSE call under way")
        assert bot.process is not None
        bot.process.send_signal(signal.SIGTERM)

        stopping = await bot.wait_ready(503)
        assert "shutdown" in stopping["failed"]
        await driver.click(BOB, "Approve", message=second)  # new work: refused
        await driver.wait_for_ephemeral(BOB, "restarting")
        assert await asyncio.to_thread(bot.process.wait, 30) == 0

    assert len(cse.create_requests()) == 1
    await wait_state(world.prefix, approval_request_id(first), State.CREATED)
    await wait_state(world.prefix, approval_request_id(second), State.PENDING)
    stop = [e for e in bot.log_entries() if e.get("event") in {"shutdown", "stop"}]
    assert [e["event"] for e in stop] == ["shutdown", "stop"]
    # The call was made by the follow-up worker, which said so as it stopped.
    worker = [e for e in bot.log_entries() if e.get("event") == "worker.shutdown"]
    assert len(worker) == 1 and "1 CSE call(s) under way" in worker[0]["message"]


# --- several replicas on one Redis -------------------------------------------------------------


async def test_two_http_replicas_behind_a_balancer_make_one_cse_call(world: World) -> None:
    fake, cse = world.fake, world.cse
    one, two = world.bot(), world.bot()
    await one.wait_ready()
    await two.wait_ready()
    async with (
        SlackDriver(one.url, SIGNING_SECRET, fake) as via_one,
        SlackDriver(two.url, SIGNING_SECRET, fake) as via_two,
    ):
        approval = await request_approval(via_one, fake)
        request_id = approval_request_id(approval)
        # The balancer sends each click to either replica; two approvers click at once.
        clicks = [
            driver.click(user, "Approve", message=approval, stale=True)
            for driver in (via_one, via_two)
            for user in (BOB, CAROL)
        ]
        assert all(r.status_code == 200 for r in await asyncio.gather(*clicks))
        await wait_state(world.prefix, request_id, State.CREATED)
        await via_two.command(ALICE, CHANNEL, f"status {request_id}")
        await via_two.wait_for_ephemeral(ALICE, request_id)
    assert len(cse.create_requests()) == 1

    async def claimed() -> float:  # the follow-up workers report their counts every second
        total = 0.0
        for bot in (one, two):
            total += value(await bot.metrics(), "cse_backup_approvals_total", outcome="claimed")
        return total

    for _ in range(100):
        if await claimed() >= 1:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # a second claim would be counted by now
    assert await claimed() == 1
    assert one.terminate() == 0 and two.terminate() == 0


async def test_socket_mode_with_several_connections_makes_one_cse_call(world: World) -> None:
    fake, cse = world.fake, world.cse
    one, two = world.socket_bot(), world.socket_bot()
    await fake.async_wait_for_sockets(2)
    await one.wait_ready()
    await two.wait_ready()
    async with SlackDriver.over_socket(fake) as driver:
        # Slack spreads envelopes over the connections: the command, the confirmation click and
        # the approvals land on different processes.
        approval = await request_approval(driver, fake)
        request_id = approval_request_id(approval)
        clicks = [
            driver.click(user, "Approve", message=approval, stale=True)
            for user in (BOB, CAROL, BOB, CAROL)
        ]
        await asyncio.gather(*clicks)
        await wait_state(world.prefix, request_id, State.CREATED)
    assert len(cse.create_requests()) == 1
    handled = [
        value(await bot.metrics(), "cse_backup_slack_ack_seconds_count") for bot in (one, two)
    ]
    assert all(n > 0 for n in handled), handled  # both connections took work
    assert one.terminate() == 0 and two.terminate() == 0


# --- REDIS_URL: unix:// and rediss:// ------------------------------------------------------------


async def test_redis_over_a_unix_socket(world: World) -> None:
    redis = RedisProcess(unix=True, appendonly=True).start()
    try:
        bot = world.bot(redis.url)
        assert (await bot.wait_ready())["checks"] == {"redis": "ok"}
        async with SlackDriver(bot.url, SIGNING_SECRET, world.fake) as driver:
            approval = await request_approval(driver, world.fake)
            await driver.click(BOB, "Approve", message=approval)
            await driver.wait_for_message("Backup policy created", channel=CHANNEL)
        await wait_state(world.prefix, approval_request_id(approval), State.CREATED, redis.url)
        assert bot.terminate() == 0
        start = next(e for e in bot.log_entries() if "request store" in e["message"])
        assert str(redis.socket_path) in start["message"]
    finally:
        redis.remove()


async def test_rediss_against_a_plain_redis_is_not_ready_and_says_redis(world: World) -> None:
    bot = world.bot("rediss://:secret-redis-pw@127.0.0.1:6379/0")
    down = await bot.wait_ready(503)
    assert down["failed"] == ["redis"]
    assert bot.terminate() == 0
    assert "secret-redis-pw" not in bot.log_path.read_text()
    start = next(e for e in bot.log_entries() if "request store" in e["message"])
    assert start["message"].startswith("request store: rediss://127.0.0.1:6379/0")


# --- the README's Operating it section -----------------------------------------------------


def test_readme_operating_section_matches_the_code() -> None:
    from bot import metrics

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Operating it", 1)[1].split("\n## ", 1)[0]
    names = {
        family.name
        for family in metrics.REGISTRY.collect()
        if family.name.startswith("cse_backup_")
    }
    assert names
    for name in names:
        assert f"`{name}" in section, f"{name} is not described in README"
    for link in re.findall(r"\]\(((?:deploy|Dockerfile)[^)]*)\)", section):
        assert (root / link).exists(), link
    for heading in (
        "Health",
        "Metrics",
        "Logs",
        "Several replicas",
        "Backing up",
        "Troubleshooting",
    ):
        assert f"### {heading}" in section
    for symptom in (
        "not_in_channel",
        "invalid_auth",
        "expired_trigger_id",
        "not answering",
        "APIGW.0301",
        "outcome unknown",
        "dispatch_failed",
        "CSE_SCHEDULE_TIMEZONE",
    ):
        assert symptom in section.split("### Troubleshooting", 1)[1], symptom
