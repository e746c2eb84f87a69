"""Secrets (CONTRACT §3, §5): the whole flow in a real process (HTTP mode, the service token
fetched from IAM with a password, DEBUG logging), including a CSE that echoes the token it was
sent and an IAM that echoes the password, then `check` with the same settings. The bot token,
the signing secret, the IAM password and every service token IAM issued appear in no log line,
no Slack message or view, no error text, no HTTP answer (/metrics, /readyz, /slack/events), no
`check` output and nothing kept in Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from bot.core.requests import State
from bot.store import open_store
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_driver import SlackDriver
from tests.procs import bot_env, eventually, free_port, start_bot
from tests.slack_harness import (
    ALICE,
    BOB,
    CHANNEL,
    REDIS_URL,
    approval_request_id,
    drop_prefix,
    new_approval_message,
)

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason=INC-42'


def _leaks(text: str, known: list[str]) -> list[str]:
    """Which secrets (or a recognisable 12-character start of one) occur in `text`."""
    found = []
    for secret in known:
        if secret in text or secret[:12] in text:
            found.append(secret[:6] + "…")
    return found


async def test_no_secret_leaves_the_process(tmp_path: Path) -> None:
    bot_token = f"xoxb-{secrets.token_hex(12)}"
    signing_secret = secrets.token_hex(16)
    iam_password = f"Pw-{secrets.token_hex(10)}"
    fake = FakeSlack(bot_token=bot_token)
    for user in (ALICE, BOB):
        fake.add_user(user)
    fake.start()
    cse = FakeCse(iam_password=iam_password, static_token=None).start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = bot_env(
        fake,
        cse,
        redis_url=REDIS_URL,
        prefix=prefix,
        port=port,
        SLACK_BOT_TOKEN=bot_token,
        SLACK_SIGNING_SECRET=signing_secret,
        CSE_AUTH_TOKEN="",
        IAM_ENDPOINT=cse.url,
        IAM_DOMAIN=cse.iam_domain,
        IAM_USER=cse.iam_user,
        IAM_PASSWORD=iam_password,
        IAM_PROJECT_ID=cse.project_id,
        LOG_LEVEL="DEBUG",
    )
    store = open_store(REDIS_URL, prefix)
    bot = await start_bot(env, tmp_path)
    answers: list[str] = []
    issued: set[str] = set()  # every service token IAM handed out
    try:
        async with SlackDriver(bot.url, signing_secret, fake) as driver:

            async def ask_and_approve() -> str:
                before = {m.ts for m in fake.messages(CHANNEL)}
                await driver.command(ALICE, CHANNEL, QUICK)
                confirmation = await driver.wait_for_ephemeral(
                    ALICE, "Request approval", timeout=WAIT
                )
                await driver.click(ALICE, "Request approval", message=confirmation)
                approval = await new_approval_message(fake, CHANNEL, before)
                request_id = approval_request_id(approval)
                await driver.click(BOB, "Approve", message=approval)

                async def decided() -> bool:
                    request = await store.get(request_id)
                    return request is not None and request.state not in (
                        State.PENDING,
                        State.APPROVED,
                    )

                await eventually(decided, timeout=20)
                return request_id

            # 1. The ordinary flow, with the token IAM issued at start-up.
            first = await ask_and_approve()
            assert (await store.get(first)).state is State.CREATED  # type: ignore[union-attr]
            assert cse.issued_tokens, "the bot never logged in to IAM"

            # 2. A CSE that echoes the token it was sent back in its error.
            token = cse.issued_tokens[-1]
            cse.respond_next(
                400,
                {"error_code": "CSE.4001", "error_msg": f"token {token} is bad", "detail": token},
            )
            second = await ask_and_approve()
            assert (await store.get(second)).state is State.FAILED  # type: ignore[union-attr]

            # 3. The gateway refuses the token; IAM, asked again, echoes the password.
            issued.update(cse.issued_tokens)  # revoking forgets them
            cse.revoke_tokens()
            cse.respond_next(
                500,
                {"error": {"code": 500, "message": f"password {iam_password} is wrong"}},
                target="iam",
            )
            third = await ask_and_approve()
            failed = await store.get(third)
            assert failed is not None and failed.state is State.FAILED
            assert failed.error is not None and failed.error["error_code"] == "IAM_TOKEN"

            # 4. IAM works again: a fresh token, and the flow goes through.
            fourth = await ask_and_approve()
            assert (await store.get(fourth)).state is State.CREATED  # type: ignore[union-attr]
            await driver.command(BOB, CHANNEL, f"status {third}")
            await driver.wait_for_ephemeral(BOB, "History", timeout=WAIT)

            # A forged request, answered without anything from the process's secrets.
            async with httpx.AsyncClient() as http:
                forged = await http.post(
                    f"{bot.url}/slack/events",
                    content="command=%2Fcse-backup&text=help",
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Slack-Request-Timestamp": str(int(time.time())),
                        "X-Slack-Signature": "v0=" + "0" * 64,
                    },
                )
                assert forged.status_code == 401
                answers.append(forged.text)
                for path in ("/metrics", "/readyz", "/healthz"):
                    answers.append((await http.get(f"{bot.url}{path}")).text)
        assert await bot.terminate() == 0

        checked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot", "check"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert "Redis" in checked.stdout + checked.stderr  # it did run its checks
        answers += [checked.stdout, checked.stderr]

        issued.update(cse.issued_tokens)
        known = [bot_token, signing_secret, iam_password, *issued]
        assert len(issued) >= 2  # the token was renewed once along the way

        log_lines = bot.log_text().splitlines()
        assert len(log_lines) > 50  # DEBUG: plenty to leak from, had anything leaked
        for line in log_lines:
            assert not _leaks(line, known), line[:300]

        slack_said = [json.dumps(call.args) for call in fake.calls]
        slack_said += [m.text + json.dumps(m.blocks) for m in fake.messages()]
        slack_said += [e.text + json.dumps(e.blocks) for e in fake.ephemerals()]
        slack_said += [json.dumps(view) for view in fake.views_by_id.values()]
        for text in slack_said:
            assert not _leaks(text, known), text[:300]
        # The echoed token and password were there to leak, and were scrubbed.
        shown = "\n".join(slack_said)
        assert "CSE.4001" in shown and "IAM_TOKEN" in shown

        for text in answers:
            assert not _leaks(text, known), text[:300]

        client = aioredis.from_url(REDIS_URL, decode_responses=True)
        try:
            stored = []
            async for key in client.scan_iter(match=f"{prefix}:*"):
                kind = await client.type(key)
                if kind == "hash":
                    stored.append(json.dumps(await client.hgetall(key)))
                elif kind == "string":
                    stored.append(str(await client.get(key)))
                elif kind == "stream":
                    stored.append(json.dumps(await client.xrange(key)))
        finally:
            await client.aclose()
        assert stored
        for text in stored:
            assert not _leaks(text, known), text[:300]
    finally:
        bot.close()
        await store.aclose()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()
