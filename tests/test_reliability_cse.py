"""CSE and IAM faults through the running app (CONTRACT §1, §5): each fault ends in the right
state with an explanation a person can act on, and never a second POST once one may have
reached CSE (the only second POST allowed is the one after the gateway refused a token)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from bot.core.requests import State
from bot.cse import CseClient
from bot.iam import IamTokenProvider, StaticTokenProvider, TokenProvider
from tests.fakes.cse_server import TOKEN_EXPIRED
from tests.procs import free_port
from tests.slack_harness import BOB, CHANNEL, Harness, running

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

TIMEOUT = 1.5  # the CSE client's deadline in these tests


def _iam(h: Harness, *, password: str | None = None, url: str | None = None) -> TokenProvider:
    return IamTokenProvider(
        url or h.cse.url,
        h.cse.iam_domain,
        h.cse.iam_user,
        SecretStr(password or h.cse.iam_password),
        project_id=h.cse.project_id,
        timeout=TIMEOUT,
        connect_timeout=0.5,
    )


async def _use_client(h: Harness, tokens: TokenProvider, url: str | None = None) -> None:
    """The bot again, with this token source and a short CSE deadline (a restart)."""
    old = h.cse_client
    h.cse_client = CseClient(
        url or h.cse.url,
        tokens,
        connect_timeout=0.5,
        timeout=TIMEOUT,
        connect_retries=1,
        retry_backoff=0.05,
    )
    await h.restart()
    await old.aclose()


Arrange = Callable[[Harness], Awaitable[None]]


async def _nothing(h: Harness) -> None:
    del h


def _respond(status: int, body: object) -> Arrange:
    async def arrange(h: Harness) -> None:
        h.cse.respond_next(status, body)

    return arrange


async def _static_token_expired(h: Harness) -> None:
    h.cse.revoke_tokens(static=True)


async def _slow_cse(h: Harness) -> None:
    await _use_client(h, StaticTokenProvider(SecretStr(h.cse.static_token or "")))
    h.cse.delay = TIMEOUT + 2


async def _cse_refuses_connections(h: Harness) -> None:
    tokens = StaticTokenProvider(SecretStr(h.cse.static_token or ""))
    await _use_client(h, tokens, url=f"http://127.0.0.1:{free_port()}")


async def _drop(h: Harness) -> None:
    h.cse.close_next()


async def _malformed(h: Harness) -> None:
    h.cse.malformed_next("<html><body>OK</body></html>")


async def _iam_token_expires(h: Harness) -> None:
    tokens = _iam(h)
    await tokens.token()  # the bot holds a token ...
    await _use_client(h, tokens)
    h.cse.revoke_tokens()  # ... that the gateway no longer accepts


async def _iam_token_refused_twice(h: Harness) -> None:
    await _use_client(h, _iam(h))
    h.cse.respond_next(401, TOKEN_EXPIRED)
    h.cse.respond_next(401, TOKEN_EXPIRED)


async def _iam_down(h: Harness) -> None:
    await _use_client(h, _iam(h, url=f"http://127.0.0.1:{free_port()}"))


async def _iam_wrong_password(h: Harness) -> None:
    await _use_client(h, _iam(h, password="not-the-password"))


async def _iam_slow(h: Harness) -> None:
    await _use_client(h, _iam(h))
    h.cse.iam_delay = TIMEOUT + 2


@dataclass(frozen=True)
class Fault:
    arrange: Arrange
    state: State
    posts: int  # POSTs CSE received
    shown: tuple[str, ...]  # what the posted result says (besides the state's own words)


CHECK_CONSOLE = "Check the CSE console"

FAULTS: dict[str, Fault] = {
    "400 with CSE's error body": Fault(
        _respond(
            400,
            {"error_code": "SVCSTG.00501134", "error_msg": "Invalid schedule", "detail": "cron"},
        ),
        State.FAILED,
        1,
        ("SVCSTG.00501134", "Invalid schedule", "Correct them with *Edit and resubmit*"),
    ),
    "500 in the errorCode shape": Fault(
        _respond(500, {"errorCode": "CSE.00500001", "errorMessage": "engine busy"}),
        State.FAILED,
        1,
        ("CSE.00500001", "engine busy", "Try again in a few minutes"),
    ),
    "503 from the gateway": Fault(
        _respond(503, {"error_code": "APIG.0201", "error_msg": "Backend unavailable"}),
        State.FAILED,
        1,
        ("APIG.0201", "Try again in a few minutes"),
    ),
    "502 HTML page from the gateway": Fault(
        _respond(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        State.UNKNOWN,
        1,
        (CHECK_CONSOLE, "HTTP 502", "&lt;html&gt;"),
    ),
    "504 backend timeout": Fault(
        _respond(504, {"error_code": "APIG.0202", "error_msg": "Backend timeout"}),
        State.UNKNOWN,
        1,
        (CHECK_CONSOLE, "APIG.0202"),
    ),
    "401 APIGW.0301 with a static token": Fault(
        _static_token_expired,
        State.FAILED,
        1,
        ("APIGW.0301", "renew `CSE_AUTH_TOKEN`"),
    ),
    "401 APIGW.0301 with an IAM token: renewed, sent again": Fault(
        _iam_token_expires, State.CREATED, 2, ("Policy id",)
    ),
    "401 APIGW.0301 twice with an IAM token": Fault(
        _iam_token_refused_twice, State.FAILED, 2, ("APIGW.0301", "renew `CSE_AUTH_TOKEN`")
    ),
    "slow answer past the timeout": Fault(_slow_cse, State.UNKNOWN, 1, (CHECK_CONSOLE,)),
    "connection refused": Fault(
        _cse_refuses_connections,
        State.FAILED,
        0,
        ("CSE_UNREACHABLE", "nothing was sent", "`CSE_ENDPOINT`"),
    ),
    "connection dropped after the request was sent": Fault(
        _drop, State.UNKNOWN, 1, (CHECK_CONSOLE, "NO_ANSWER")
    ),
    "200 with a body that is not JSON": Fault(
        _malformed, State.UNKNOWN, 1, (CHECK_CONSOLE, "MALFORMED_RESPONSE")
    ),
    "200 without a policy id": Fault(
        _respond(200, {"schedule": "0 2 * * *", "reserve": 7}),
        State.UNKNOWN,
        1,
        (CHECK_CONSOLE, "MALFORMED_RESPONSE"),
    ),
    "200 with nothing but an id": Fault(
        _respond(200, {"id": "policy-42"}), State.CREATED, 1, ("policy-42", "not given by CSE")
    ),
    "IAM unreachable": Fault(_iam_down, State.FAILED, 0, ("IAM_TOKEN", "`IAM_*`")),
    "IAM refuses the password": Fault(
        _iam_wrong_password, State.FAILED, 0, ("IAM_TOKEN", "IAM_PASSWORD")
    ),
    "IAM slower than the deadline": Fault(_iam_slow, State.FAILED, 0, ("IAM_TOKEN", "`IAM_*`")),
}

HEADLINE = {
    State.CREATED: "Backup policy created",
    State.FAILED: "CSE backup policy not created",
    State.UNKNOWN: "outcome unknown",
}


@pytest.mark.parametrize("name", list(FAULTS))
async def test_cse_and_iam_faults(name: str) -> None:
    fault = FAULTS[name]
    async with running() as h:
        request_id = await h.create_request()
        request = await h.store.get(request_id)
        assert request is not None and request.message_ts
        approval = h.fake.message(CHANNEL, request.message_ts)
        static_token = h.cse.static_token or ""
        await fault.arrange(h)
        await h.driver.click(BOB, "Approve", message=approval)
        final = await h.wait_stored(
            request_id, lambda r: r.state not in (State.PENDING, State.APPROVED), timeout=15
        )
        assert final.state is fault.state
        assert len(h.cse.create_requests()) == fault.posts

        result = await h.driver.wait_for_message(
            HEADLINE[fault.state], channel=CHANNEL, timeout=WAIT
        )
        shown = result.all_text + json.dumps(result.blocks)
        for words in fault.shown:
            assert words in shown, (words, result.all_text)
        if fault.state is State.FAILED:
            assert "Edit and resubmit" in shown  # the way forward is one click away
        if fault.state is State.UNKNOWN:
            assert "Edit and resubmit" not in shown  # never invite a second POST blindly
        for secret in (static_token, h.cse.iam_password, *h.cse.issued_tokens):
            assert secret and secret not in shown

        # The approval message tells the same story, and a late click changes nothing.
        assert await h.fake.async_wait_until(
            lambda: (
                not any(
                    b.get("type") == "actions" for b in h.fake.message(CHANNEL, approval.ts).blocks
                )
            ),
            timeout=WAIT,
        )
        posts = len(h.cse.create_requests())
        await h.driver.click(BOB, "Approve", message=approval, stale=True)
        await h.driver.wait_for_ephemeral(BOB, "already approved", timeout=WAIT)
        await h.driver.command(BOB, CHANNEL, f"status {request_id}")
        status = await h.driver.wait_for_ephemeral(BOB, "History", timeout=WAIT)
        assert final.state.value in status.all_text
        assert len(h.cse.create_requests()) == posts
