"""Request authenticity (CONTRACT §2, §5): in HTTP mode only requests signed by Slack with the
signing secret, within five minutes, are acted on. Everything else gets 401 and changes nothing:
no state, no CSE call, no Slack call (not even to a `response_url` the forger supplied). No
setting turns the check off."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.app import build_bot
from bot.core.requests import State
from bot.cse import CseClient
from bot.iam import StaticTokenProvider
from bot.slack.ids import Action
from bot.store import open_store
from bot.web import Readiness, build_web_app
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack
from tests.procs import bot_env, free_port, settled, start_bot
from tests.slack_harness import (
    ALICE,
    BOB,
    BOT_TOKEN,
    CHANNEL,
    REDIS_URL,
    SIGNING_SECRET,
    Harness,
    drop_prefix,
    make_settings,
    running,
    serve,
)

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

FORM = "application/x-www-form-urlencoded"


def _sign(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    mac = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return f"v0={mac.hexdigest()}"


def _approve_payload(h: Harness, request_id: str, user: str = BOB) -> bytes:
    """An Approve click exactly as Slack would send it, with a live response_url."""
    payload = {
        "type": "block_actions",
        "user": h.driver.user_obj(user),
        "api_app_id": h.fake.app_id,
        "team": {"id": h.fake.team_id, "domain": h.fake.team_domain},
        "trigger_id": h.fake.issue_trigger_id(user),
        "channel": {"id": CHANNEL, "name": CHANNEL.lower()},
        "container": {"type": "message", "channel_id": CHANNEL, "message_ts": "1.1"},
        "response_url": h.fake.issue_response_url(user, CHANNEL),
        "actions": [
            {
                "type": "button",
                "action_id": Action.APPROVE.value,
                "block_id": "actions",
                "value": request_id,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


Forgery = Callable[[bytes], tuple[bytes, dict[str, str]]]
NOW = lambda: str(int(time.time()))  # noqa: E731


FORGERIES: dict[str, Forgery] = {
    "unsigned": lambda body: (body, {}),
    "timestamp only": lambda body: (body, {"X-Slack-Request-Timestamp": NOW()}),
    "signature only": lambda body: (body, {"X-Slack-Signature": _sign(body, NOW())}),
    "wrong secret": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": NOW(), "X-Slack-Signature": _sign(body, NOW(), "guess")},
    ),
    "zero signature": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": NOW(), "X-Slack-Signature": "v0=" + "0" * 64},
    ),
    "signature of another body": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": NOW(), "X-Slack-Signature": _sign(b"payload=%7B%7D", NOW())},
    ),
    "body changed after signing": lambda body: (
        body.replace(b"U0BOB0002", b"U0CAROL03"),
        {"X-Slack-Request-Timestamp": NOW(), "X-Slack-Signature": _sign(body, NOW())},
    ),
    "stale, six minutes old": lambda body: (
        body,
        {
            "X-Slack-Request-Timestamp": str(int(time.time()) - 360),
            "X-Slack-Signature": _sign(body, str(int(time.time()) - 360)),
        },
    ),
    "from the future, six minutes ahead": lambda body: (
        body,
        {
            "X-Slack-Request-Timestamp": str(int(time.time()) + 360),
            "X-Slack-Signature": _sign(body, str(int(time.time()) + 360)),
        },
    ),
    "timestamp not a number": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": _sign(body, "abc")},
    ),
    "timestamp empty": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": _sign(body, "")},
    ),
    "timestamp in exponent form": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": "1.7e9", "X-Slack-Signature": _sign(body, "1.7e9")},
    ),
    "signature version v1": lambda body: (
        body,
        {
            "X-Slack-Request-Timestamp": NOW(),
            "X-Slack-Signature": "v1=" + _sign(body, NOW())[3:],
        },
    ),
    "signature in upper case": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": NOW(), "X-Slack-Signature": _sign(body, NOW()).upper()},
    ),
    "signature truncated": lambda body: (
        body,
        {"X-Slack-Request-Timestamp": NOW(), "X-Slack-Signature": _sign(body, NOW())[:-1]},
    ),
    "body not UTF-8": lambda body: (
        body + b"\xff\xfe",
        {"X-Slack-Request-Timestamp": NOW(), "X-Slack-Signature": "v0=" + "1" * 64},
    ),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_approve_gets_401_and_changes_nothing(forgery: str) -> None:
    async with running() as h:
        request_id = await h.create_request()
        before = await h.store.get(request_id)
        calls_before = await settled(h.fake)
        body, headers = FORGERIES[forgery](_approve_payload(h, request_id))
        response = await h.driver.raw(body, {"Content-Type": FORM, **headers})
        assert response.status_code == 401
        await settled(h.fake)
        assert await h.store.get(request_id) == before
        assert [e.to_state for e in await h.store.audit(request_id)] == [State.PENDING]
        assert h.cse.create_requests() == []
        assert h.fake.calls[calls_before:] == []  # no reply anywhere, no response_url used

        # The same click, properly signed, works: the forgery alone made the difference.
        genuine = _approve_payload(h, request_id)
        signed = await h.driver.raw(genuine, {"Content-Type": FORM, **h.driver.sign(genuine)})
        assert signed.status_code == 200
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        assert len(h.cse.create_requests()) == 1


async def test_a_signed_but_unreadable_body_is_a_client_error_not_a_crash() -> None:
    async with running() as h:
        for body, content_type in (
            (b"payload=%7Bnot json", FORM),
            (b"{not json", "application/json"),
            (b"[1, 2]", "application/json"),
            (b"payload=%5B1%5D", FORM),
            (b"command=%2Fcse-backup&text=\xff", FORM),
        ):
            response = await h.driver.raw(
                body, {"Content-Type": content_type, **h.driver.sign(body)}
            )
            assert 400 <= response.status_code < 500, (body, response.status_code)
        assert h.fake.calls == []


async def test_a_replayed_command_is_refused() -> None:
    async with running() as h:
        fields = {
            "command": "/cse-backup",
            "text": 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5',
            "user_id": ALICE,
            "channel_id": CHANNEL,
            "team_id": h.fake.team_id,
            "response_url": h.fake.issue_response_url(ALICE, CHANNEL),
            "trigger_id": h.fake.issue_trigger_id(ALICE),
        }
        body = urlencode(fields).encode()
        signed_long_ago = h.driver.sign(body, int(time.time()) - 301)
        response = await h.driver.raw(body, {"Content-Type": FORM, **signed_long_ago})
        assert response.status_code == 401
        assert h.fake.calls == []
        assert await h.store.list_channel(CHANNEL) == []


async def test_no_setting_turns_the_check_off_in_process() -> None:
    """Even an app built with Socket Mode settings (where Bolt skips verification, since no HTTP
    request ever reaches it) refuses unsigned requests the moment it is served over HTTP."""
    fake = FakeSlack(bot_token=BOT_TOKEN).start()
    cse = FakeCse().start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        fake,
        cse,
        prefix,
        slack_app_token=SecretStr("xapp-1-test"),
        approvers=(),
        requesters=(),
        allowed_channels=(),
        log_level="DEBUG",
    )
    assert settings.socket_mode
    store = open_store(REDIS_URL, prefix)
    cse_client = CseClient(cse.url, StaticTokenProvider(SecretStr("x")))
    bot = build_bot(settings, store=store, cse=cse_client)
    runner: web.AppRunner | None = None
    try:
        runner, url = await serve(bot, store)
        fields = urlencode({"command": "/cse-backup", "text": "help", "user_id": ALICE})
        async with httpx.AsyncClient() as http:
            unsigned = await http.post(
                f"{url}/slack/events", content=fields, headers={"Content-Type": FORM}
            )
        assert unsigned.status_code == 401
        assert fake.calls == []
        # An HTTP app cannot be served without a secret at all.
        with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
            build_web_app(bot.app, Readiness(store), signing_secret="")
        bot.app._signing_secret = ""  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
            build_web_app(bot.app, Readiness(store))
    finally:
        if runner is not None:
            await runner.cleanup()
        await bot.aclose()
        await cse_client.aclose()
        await store.aclose()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()


async def test_no_setting_turns_the_check_off_in_a_real_process(tmp_path: Path) -> None:
    fake = FakeSlack(bot_token=BOT_TOKEN).start()
    cse = FakeCse().start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    hopeful = {  # switches people reach for; none of them exists
        "SLACK_REQUEST_VERIFICATION_ENABLED": "false",
        "REQUEST_VERIFICATION_ENABLED": "false",
        "SLACK_VERIFY_SIGNATURE": "false",
        "SKIP_SIGNATURE_CHECK": "true",
        "SLACK_SIGNATURE_VERIFICATION": "off",
        "DEBUG": "1",
        "LOG_LEVEL": "DEBUG",
    }
    env = bot_env(fake, cse, redis_url=REDIS_URL, prefix=prefix, port=port, **hopeful)
    (tmp_path / ".env").write_text("\n".join(f"{k}={v}" for k, v in hopeful.items()) + "\n")
    bot = await start_bot(env, tmp_path)
    try:
        fields = urlencode({"command": "/cse-backup", "text": "create", "user_id": ALICE})
        async with httpx.AsyncClient() as http:
            for headers in (
                {},
                {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0="},
            ):
                response = await http.post(
                    f"{bot.url}/slack/events",
                    content=fields,
                    headers={"Content-Type": FORM, **headers},
                )
                assert response.status_code == 401
        assert [c.method for c in fake.calls if c.method != "auth.test"] == []
    finally:
        bot.close()
        await drop_prefix(prefix)
        cse.stop()
        fake.stop()


async def test_http_mode_without_a_signing_secret_does_not_start(tmp_path: Path) -> None:
    fake = FakeSlack(bot_token=BOT_TOKEN).start()
    cse = FakeCse().start()
    env = bot_env(
        fake,
        cse,
        redis_url=REDIS_URL,
        prefix="test-nosecret",
        port=free_port(),
        SLACK_SIGNING_SECRET="",
    )
    try:
        bot = await start_bot(env, tmp_path, wait=False)
        code = await asyncio.to_thread(bot.process.wait, 30)
        assert code != 0
        assert "SLACK_SIGNING_SECRET" in bot.log_text()
    finally:
        cse.stop()
        fake.stop()
