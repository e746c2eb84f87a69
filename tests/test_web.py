"""The HTTP server: request signing, health, readiness and metrics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode

import httpx
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from slack_bolt.request.internals import parse_body

from bot.store import open_store
from bot.web import Readiness, build_web_app, form_fields, slack_body
from tests.slack_harness import ALICE, BOT_TOKEN, CHANNEL, SIGNING_SECRET, running

COMMAND = {
    "token": "x",
    "team_id": "T0FAKE",
    "channel_id": CHANNEL,
    "user_id": ALICE,
    "command": "/cse-backup",
    "text": "help",
    "response_url": "http://127.0.0.1:9/hooks/x",
    "trigger_id": "1.2.3",
}


async def test_unsigned_and_badly_signed_requests_get_401() -> None:
    async with running() as h:
        body = urlencode(COMMAND)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        unsigned = await h.driver.raw(body, form)
        assert unsigned.status_code == 401
        wrong = await h.driver.raw(
            body,
            {
                **form,
                "X-Slack-Request-Timestamp": str(int(time.time())),
                "X-Slack-Signature": "v0=" + "0" * 64,
            },
        )
        assert wrong.status_code == 401
        stale = await h.driver.raw(body, {**form, **h.driver.sign(body, int(time.time()) - 600)})
        assert stale.status_code == 401
        assert h.fake.calls == []  # nothing reached Slack: no auth.test, no reply

        signed = await h.driver.raw(body, {**form, **h.driver.sign(body)})
        assert signed.status_code == 200


async def test_url_verification() -> None:
    async with running() as h:
        response = await h.driver.url_verification("challenge-123")
        assert response.status_code == 200
        assert "challenge-123" in response.text


async def test_health_ready_and_metrics() -> None:
    async with running() as h, httpx.AsyncClient(base_url=h.url) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"redis": "ok"}

        await h.driver.command(ALICE, CHANNEL, "help")
        await h.driver.wait_for_ephemeral(ALICE, "/cse-backup create")
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        text = metrics.text
        assert 'cse_backup_interactions_total{kind="command",outcome="received"}' in text
        assert 'cse_backup_slack_ack_seconds_count{kind="command"}' in text
        for name in (
            "cse_backup_requests_total",
            "cse_backup_approvals_total",
            "cse_backup_cse_call_seconds",
            "cse_backup_pending_requests",
            "cse_backup_redis_errors_total",
            "cse_backup_slack_api_errors_total",
        ):
            assert name in text
        assert BOT_TOKEN not in text and SIGNING_SECRET not in text
        assert ALICE not in text and CHANNEL not in text  # no high-cardinality labels


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_readyz_names_redis_when_it_does_not_answer() -> None:
    store = open_store("redis://127.0.0.1:1/0", "test-down", socket_timeout=0.5)
    try:
        async with (
            _serve(build_web_app(None, Readiness(store))) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["failed"] == ["redis"]
            assert body["status"] == "unavailable"
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await store.aclose()


async def test_socket_mode_readiness_and_no_events_route() -> None:
    store = open_store("redis://127.0.0.1:6379/0", "test-socket")
    connected = False

    async def is_connected() -> bool:
        return connected

    try:
        readiness = Readiness(store, socket_connected=is_connected)
        async with (
            _serve(build_web_app(None, readiness)) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert json.loads(ready.text)["failed"] == ["socket_mode"]
            connected = True
            assert (await http.get("/readyz")).status_code == 200
            # Socket Mode: Slack requests never arrive over HTTP, so none are accepted.
            events = await http.post("/slack/events", content=urlencode(COMMAND))
            assert events.status_code in (404, 405)
    finally:
        await store.aclose()


# --- parsing Slack's bodies ---------------------------------------------------------------------

# Text with everything form encoding treats specially, broken escapes and non-ASCII included.
FORM_TEXT = st.text(alphabet=st.sampled_from("%+&=\\ab09fFgZ; é😀\n"), max_size=40)


@given(FORM_TEXT)
def test_form_fields_read_any_text_as_urllib_does(body: str) -> None:
    assert form_fields(body) == dict(parse_qsl(body, keep_blank_values=True))


@given(st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=60), max_size=5))
def test_form_fields_read_back_what_urlencode_wrote(fields: dict[str, str]) -> None:
    assert form_fields(urlencode(fields)) == fields


@given(st.text(max_size=80), st.integers(0, 2**40))
def test_interactivity_payloads_parse_as_bolt_parses_them(text: str, number: int) -> None:
    payload = {"type": "block_actions", "text": text, "n": number, "blocks": [{"t": text}]}
    body = urlencode({"payload": json.dumps(payload, ensure_ascii=bool(number % 2))})
    form = "application/x-www-form-urlencoded"
    assert slack_body(body, form) == parse_body(body, form) == payload


async def test_a_command_whose_text_says_payload_is_still_a_command() -> None:
    # Bolt alone reads any body containing "payload" as interactivity and answers nothing.
    async with running() as h:
        text = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason="payload move"'
        response = await h.driver.command(ALICE, CHANNEL, text)
        assert response.status_code == 200
        shown = await h.driver.wait_for_ephemeral(ALICE, "Request approval")
        assert "payload move" in shown.all_text
