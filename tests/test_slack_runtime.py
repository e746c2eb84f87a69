"""`cse-backup-bot run` as a real process: serves Slack over HTTP, logs JSON, and on SIGTERM lets
the CSE call under way finish and record its outcome before it exits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from bot.core.requests import State
from bot.store import open_store
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_driver import SlackDriver
from tests.slack_harness import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CHANNEL,
    PROD_ID,
    REDIS_URL,
    SIGNING_SECRET,
    drop_prefix,
    new_approval_message,
)

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            if process.poll() is not None:
                raise AssertionError(f"the bot exited with {process.returncode}")
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the bot never answered /healthz")


async def _request_and_click(driver: SlackDriver, fake: FakeSlack) -> None:
    before = {m.ts for m in fake.messages(CHANNEL)}
    await driver.command(ALICE, CHANNEL, QUICK)
    confirmation = await driver.wait_for_ephemeral(ALICE, "Request approval")
    await driver.click(ALICE, "Request approval", message=confirmation)
    approval = await new_approval_message(fake, CHANNEL, before)
    await driver.click(BOB, "Approve", message=approval)


def _env(fake: FakeSlack, cse: FakeCse, prefix: str, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "PORT": str(port),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "CSE_ENDPOINT": cse.url,
        "CSE_AUTH_TOKEN": cse.static_token or "",
        "CSE_ENGINES": f"prod={PROD_ID}",
        "CSE_TIMEOUT": "20s",
        "APPROVAL_REMINDERS": "off",
        "LOG_FORMAT": "json",
    }


async def test_run_serves_and_shuts_down_gracefully(tmp_path: Path) -> None:
    fake = FakeSlack(bot_token=BOT_TOKEN)
    fake.add_user(ALICE, tz="Europe/Berlin")
    fake.add_user(BOB)
    fake.start()
    cse = FakeCse().start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = _env(fake, cse, prefix, port)
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env, stderr=log, stdout=log
        )
    url = f"http://127.0.0.1:{port}"
    store = open_store(REDIS_URL, prefix)
    try:
        await _wait_healthy(url, process)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/readyz")).status_code == 200
        async with SlackDriver(url, SIGNING_SECRET, fake) as driver:
            await _request_and_click(driver, fake)
            await driver.wait_for_message("Backup policy created", channel=CHANNEL)

            cse.delay = 1.5  # the next CSE call is under way when SIGTERM arrives
            await _request_and_click(driver, fake)
            for _ in range(200):
                if len(cse.create_requests()) == 2:
                    break
                await asyncio.sleep(0.02)
            assert len(cse.create_requests()) == 2
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
        assert code == 0
        requests = await store.list_channel(CHANNEL)
        assert [r.state for r in requests] == [State.CREATED, State.CREATED]

        lines = log_path.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(entries) == len([line for line in lines if line.strip()])  # JSON only
        transitions = [e for e in entries if e.get("event") == "request.transition"]
        assert {e["to_state"] for e in transitions} >= {"pending", "approved", "created"}
        text = log_path.read_text()
        for secret in (BOT_TOKEN, SIGNING_SECRET, cse.static_token or "-"):
            assert secret not in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        await store.aclose()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()


async def test_socket_mode_serves_slack_over_the_socket_and_health_over_http(
    tmp_path: Path,
) -> None:
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token="xapp-test-app-token")
    fake.add_user(ALICE, tz="Europe/Berlin")
    fake.add_user(BOB)
    fake.start()
    cse = FakeCse().start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = _env(fake, cse, prefix, port)
    env["SLACK_APP_TOKEN"] = "xapp-test-app-token"
    del env["SLACK_SIGNING_SECRET"]  # not needed in Socket Mode
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env, stderr=log, stdout=log
        )
    url = f"http://127.0.0.1:{port}"
    store = open_store(REDIS_URL, prefix)
    try:
        await _wait_healthy(url, process)
        await fake.async_wait_for_sockets(1)
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                ready = await http.get(f"{url}/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 200
            assert ready.json()["checks"]["socket_mode"] == "ok"
            events = await http.post(f"{url}/slack/events", content="x=1")
            assert events.status_code in (404, 405)  # Slack requests come over the socket only
        async with SlackDriver.over_socket(fake) as driver:
            await _request_and_click(driver, fake)
            await driver.wait_for_message("Backup policy created", channel=CHANNEL)
        assert len(cse.create_requests()) == 1
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert "xapp-test-app-token" not in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        await store.aclose()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()
