"""The fake Slack and fake CSE, in a process of their own, driven over stdin/stdout.

The benchmark's load generator must not share a GIL with the servers the bot talks to, or the
bot's own Slack calls would slow down the clock that measures it. So this process hosts
`FakeSlack` and `FakeCse` (tests/fakes), and `SlackDriver`s that do the untimed preparation
(open modals, create pending requests) for real and build the timed payloads, which the parent
signs and sends itself.

Protocol, one JSON object per line. Parent → host: `{"id": n, "op": ..., ...}`. Host → parent:
`{"id": n, "ok": true, "result": ...}` or `{"id": n, "ok": false, "error": "..."}`, and events
`{"event": "result", "request_id", "header", "t"}` whenever the bot posts a request's outcome
(`t` is `time.monotonic()` when the post reached the fake; CLOCK_MONOTONIC is shared by every
process on Linux, so the parent compares it with its own send times).

Run: `python -m bench.fakes_host` (the parent does this).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx

from bot.core.requests import ID_ALPHABET, REQUEST_ID_PREFIX
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import JSON, FakeSlack, _Reply, find_button, text_of
from tests.fakes.slack_driver import SlackDriver

CHANNEL = "C0BENCH"
APPROVER = "U0APPROVER"
REQUEST_ID = re.compile(rf"{REQUEST_ID_PREFIX}[{ID_ALPHABET}]+")
MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
APPROVAL_HEADER = "CSE backup policy request"
RESULT_HEADER = "CSE backup policy"
WAIT = 30.0  # seconds: the longest any preparation step waits for the bot
TEAM = 16  # requesters in the timed phases; also the most preparation steps run at once
QUICK_CREATE = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason="bench"'

_out_lock = threading.Lock()


def emit(obj: JSON) -> None:
    line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    with _out_lock:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


def requester(index: int) -> str:
    return f"U0REQ{index:04d}"


def _header(blocks: list[JSON]) -> str:
    for block in blocks:
        if block.get("type") == "header":
            return text_of(block.get("text"))
    return ""


class TimedSlack(FakeSlack):
    """FakeSlack that notes, at arrival, each request message and each posted outcome, and the
    last response_url issued to each user (so waiting for a reply scans only new calls)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.approvals: dict[str, tuple[str, str]] = {}  # request id -> (channel, ts)
        self.approval_of: dict[str, str] = {}  # requester -> request id
        self.response_url_of: dict[str, str] = {}  # user -> the last response_url issued

    def issue_response_url(
        self,
        user: str,
        channel: str | None,
        source: tuple[Literal["message", "ephemeral"], str, str] | None = None,
    ) -> str:
        url = super().issue_response_url(user, channel, source)
        self.response_url_of[user] = url
        return url

    def _dispatch(self, method: str, args: JSON, token: str | None, content_type: str) -> _Reply:
        arrived = time.monotonic()
        reply = super()._dispatch(method, args, token, content_type)
        if method != "chat.postMessage" or not isinstance(reply.body, dict):
            return reply
        if not reply.body.get("ok"):
            return reply
        channel, ts = str(reply.body.get("channel")), str(reply.body.get("ts"))
        try:
            message = self.message(channel, ts)
        except KeyError:
            return reply
        header = _header(message.blocks)
        found = REQUEST_ID.search(message.all_text)
        if found is None or not header.startswith(RESULT_HEADER):
            return reply
        if header.startswith(APPROVAL_HEADER):
            mentioned = MENTION.search(message.text)
            with self._lock:
                self.approvals[found.group()] = (channel, ts)
                if mentioned:
                    self.approval_of[mentioned.group(1)] = found.group()
        else:
            emit({"event": "result", "request_id": found.group(), "header": header, "t": arrived})
        return reply


class Capture:
    """An httpx transport that keeps what a SlackDriver sends, and answers an empty 200."""

    def __init__(self) -> None:
        self.sent: list[JSON] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(
            {"body": request.content.decode(), "content_type": request.headers["content-type"]}
        )
        return httpx.Response(200, content=b"")

    def take(self) -> JSON:
        return self.sent.pop()


async def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something truthy; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.002)
    raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


class Host:
    def __init__(self) -> None:
        self.slack = TimedSlack(trigger_ttl=3600.0)
        self.slack.add_user(APPROVER, real_name="Bench Approver")
        self.slack.add_channel(CHANNEL, "bench")
        self.cse = FakeCse()
        self.driver: SlackDriver | None = None
        self.capture_log = Capture()
        self.capture: SlackDriver | None = None
        self.users = 0
        # The people who use the bot in the timed phases: a small team, each person many times
        # (as in real use, so per-user caches are warm after the warm-up).
        self.team = [self.new_user() for _ in range(TEAM)]

    def start(self) -> None:
        self.slack.start()
        self.cse.start()

    def stop(self) -> None:
        self.slack.stop()
        self.cse.stop()

    def new_user(self) -> str:
        self.users += 1
        user = requester(self.users)
        self.slack.add_user(user, real_name=f"Bench Requester {self.users}")
        return user

    # --- ops ---------------------------------------------------------------------------------

    async def op_info(self) -> JSON:
        return {
            "slack_url": self.slack.url,
            "cse_url": self.cse.url,
            "cse_token": self.cse.static_token,
            "engine_id": self.cse.engines[0]["id"],
            "bot_token": self.slack.bot_token,
        }

    async def op_configure(self, app_url: str, secret: str) -> None:
        if self.driver is not None:
            await self.driver.aclose()
        if self.capture is not None:
            await self.capture.aclose()
        self.driver = SlackDriver(app_url, secret, self.slack, timeout=WAIT)
        self.capture = SlackDriver(app_url, secret, self.slack)
        await self.capture.http.aclose()
        self.capture.http = httpx.AsyncClient(transport=httpx.MockTransport(self.capture_log))

    async def op_cse_delay(self, seconds: float) -> None:
        self.cse.delay = seconds

    def _drivers(self) -> tuple[SlackDriver, SlackDriver]:
        if self.driver is None or self.capture is None:
            raise RuntimeError("configure first")
        return self.driver, self.capture

    async def op_build_commands(self, text: str, n: int) -> list[JSON]:
        """`n` slash-command payloads, from the team in turn, each with its own response_url."""
        _, capture = self._drivers()
        payloads = []
        for index in range(n):
            await capture.command(self.team[index % TEAM], CHANNEL, text)
            payloads.append(self.capture_log.take())
        return payloads

    def form_values(self) -> JSON:
        return {
            "engine": str(self.cse.engines[0]["id"]),
            "schedule": "0 2 * * *",
            "reserve": "7",
            "max_files": "5",
            "reason": "bench",
        }

    async def open_modal(self, user: str) -> str:
        """`/cse-backup create` for real; the id of the modal the bot opened."""
        driver, _ = self._drivers()
        before = {view["id"] for view in self.slack.view_stack(user)}
        response = await driver.command(user, CHANNEL, "create")
        if response.status_code != 200:
            raise RuntimeError(f"/cse-backup create answered HTTP {response.status_code}")

        def opened() -> str | None:
            fresh = [v["id"] for v in self.slack.view_stack(user) if v["id"] not in before]
            return str(fresh[-1]) if fresh else None

        view_id: str = await until(opened, "the create modal (views.open)")
        return view_id

    async def op_build_view_submissions(self, n: int) -> list[JSON]:
        """`n` first submissions of the form, each of a modal the bot really opened."""
        _, capture = self._drivers()
        payloads: list[JSON] = []

        async def one(user: str) -> None:
            view_id = await self.open_modal(user)
            await capture.submit_view(user, view_id, self.form_values())
            payloads.append(self.capture_log.take())

        await _by_team(n, self.team, one)
        return payloads

    async def make_pending(self, user: str) -> str:
        """Quick-path create, then Request approval, for real: the new request's id."""
        driver, _ = self._drivers()
        mark = self.slack.mark()
        response = await driver.command(user, CHANNEL, QUICK_CREATE)
        if response.status_code != 200:
            raise RuntimeError(f"quick-path create answered HTTP {response.status_code}")
        if not response.content.strip():  # the confirmation comes through the response_url
            url = self.slack.response_url_of[user]
            await self.slack.async_wait_for(
                "response_url", lambda c: c.args.get("response_url") == url, WAIT, since=mark
            )
        shown = next(
            (
                e
                for e in reversed(self.slack.ephemerals(user=user))
                if find_button(e.blocks, "Request approval") is not None
            ),
            None,
        )
        if shown is None:
            seen = [e.all_text[:200] for e in self.slack.ephemerals(user=user)]
            raise RuntimeError(f"no quick-path confirmation; {user} sees {seen}")
        before = self.slack.approval_of.get(user)
        response = await driver.click(user, "Request approval", message=shown)
        if response.status_code != 200:
            raise RuntimeError(f"Request approval answered HTTP {response.status_code}")

        def posted() -> str | None:
            latest = self.slack.approval_of.get(user)
            return latest if latest != before else None

        request_id: str = await until(posted, "the approval message")
        return request_id

    async def op_make_pending(self, n: int) -> list[str]:
        ids: list[str] = []

        async def one(user: str) -> None:
            ids.append(await self.make_pending(user))

        await _by_team(n, self.team, one)
        return ids

    async def op_build_approvals(self, request_ids: list[str]) -> list[JSON]:
        _, capture = self._drivers()
        payloads = []
        for request_id in request_ids:
            channel, ts = self.slack.approvals[request_id]
            await capture.click(APPROVER, "Approve", message=self.slack.message(channel, ts))
            payloads.append(self.capture_log.take())
        return payloads

    # --- single real steps, for counting Redis commands between them ------------------------

    async def op_step_open_modal(self) -> JSON:
        user = self.new_user()
        return {"user": user, "view_id": await self.open_modal(user)}

    async def op_step_submit_form(self, user: str, view_id: str) -> JSON:
        driver, _ = self._drivers()
        response = await driver.submit_view(user, view_id, self.form_values())
        body = response.json() if response.content.strip() else {}
        return {"status": response.status_code, "response_action": body.get("response_action")}

    async def op_step_confirm(self, user: str, view_id: str) -> str:
        """Submit the confirmation view (Request approval): the new request's id."""
        driver, _ = self._drivers()
        response = await driver.submit_view(user, view_id)
        if response.status_code != 200:
            raise RuntimeError(f"the confirmation submit answered HTTP {response.status_code}")
        request_id: str = await until(
            lambda: self.slack.approval_of.get(user), "the approval message"
        )
        return request_id

    async def op_step_quick_create(self) -> JSON:
        user = self.new_user()
        return {"user": user, "request_id": await self.make_pending(user)}

    async def op_step_approve(self, request_id: str) -> int:
        driver, _ = self._drivers()
        channel, ts = self.slack.approvals[request_id]
        response = await driver.click(APPROVER, "Approve", message=self.slack.message(channel, ts))
        return response.status_code

    async def op_slack_mark(self) -> int:
        """How many Slack calls (Web API and response_url) the fake has had so far."""
        return self.slack.mark()

    async def op_slack_calls(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.slack.calls:
            counts[call.method] = counts.get(call.method, 0) + 1
        return counts


async def _by_team(n: int, team: list[str], one: Callable[[str], Awaitable[None]]) -> None:
    """`one(user)` n times, each member of the team doing one step at a time."""
    remaining = n

    async def member(user: str) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(user)

    await asyncio.gather(*(member(user) for user in team[: max(1, min(len(team), n))]))


async def serve() -> None:
    host = Host()
    host.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(message: JSON) -> None:
        ident = message.pop("id")
        op = message.pop("op")
        try:
            result = await getattr(host, f"op_{op}")(**message)
            emit({"id": ident, "ok": True, "result": result})
        except Exception as exc:
            emit({"id": ident, "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            message = json.loads(line)
            if message.get("op") == "shutdown":
                emit({"id": message["id"], "ok": True, "result": None})
                break
            task = asyncio.create_task(handle(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        if host.driver is not None:
            await host.driver.aclose()
        host.stop()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
