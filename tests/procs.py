"""Real processes for the reliability tests: the bot (`python -m bot run`) and a private
`redis-server` that a test may stop, kill and restart at the moment it chooses.

Every process is stopped by its own pid (never by name) when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from aiohttp import web

from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack
from tests.slack_harness import BOT_TOKEN, PROD_ID, SIGNING_SECRET, STAGING_ID

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# --- redis-server ----------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A `redis-server` of the test's own on a free loopback port.

    `appendonly=True` keeps an append-only file in `workdir`, fsynced on every write, so even a
    SIGKILL loses nothing and a restart on the same port and directory finds every key again.
    """

    workdir: Path
    appendonly: bool = False
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=0.5)
                try:
                    if client.ping():
                        return self
                finally:
                    client.close()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server never answered PING")
            time.sleep(0.02)

    def stop(self, *, kill: bool = True) -> None:
        """Redis goes away: SIGKILL (a crash) by default, else SIGTERM (a clean shutdown)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(10)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self.process = None


# --- the bot ---------------------------------------------------------------------------------


@dataclass
class BotProcess:
    """`python -m bot run` in HTTP mode, its output (JSON log lines) in `log_path`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL to the bot and its follow-up worker (its own process group, as a container's
        processes die together): nothing gets a chance to finish anything."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def kill_parent_only(self) -> None:
        """SIGKILL to the serving process alone; its follow-up worker lives on."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    async def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # a worker left behind
            os.killpg(self.process.pid, signal.SIGKILL)


def bot_env(
    fake: FakeSlack,
    cse: FakeCse,
    *,
    redis_url: str,
    prefix: str,
    port: int,
    **extra: str,
) -> dict[str, str]:
    """The environment of a bot process talking to the fakes; `extra` adds or replaces
    variables (an empty string removes one)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "CSE_ENDPOINT": cse.url,
        "CSE_AUTH_TOKEN": cse.static_token or "",
        "CSE_ENGINES": f"prod={PROD_ID},staging={STAGING_ID}",
        "CSE_TIMEOUT": "20s",
        "APPROVAL_REMINDERS": "off",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


async def start_bot(
    env: Mapping[str, str], workdir: Path, name: str = "bot", *, wait: bool = True
) -> BotProcess:
    """Start `python -m bot run` with exactly `env`, in `workdir`; wait for /healthz."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=workdir,
            env=dict(env),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    bot = BotProcess(process, int(env["PORT"]), log_path)
    if wait:
        try:
            await wait_healthy(bot)
        except BaseException:
            bot.close()
            raise
    return bot


async def wait_healthy(bot: BotProcess, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if bot.process.poll() is not None:
                raise AssertionError(
                    f"the bot exited with {bot.process.returncode}:\n{bot.log_text()[-3000:]}"
                )
            try:
                if (await http.get(f"{bot.url}/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"the bot never answered /healthz:\n{bot.log_text()[-3000:]}")


async def eventually(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until `condition()` (sync or async) is true; AssertionError when it never is."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the condition never became true")
        await asyncio.sleep(interval)


# --- a slow network in front of Redis --------------------------------------------------------


class LatencyProxy:
    """A TCP proxy on loopback that holds every chunk for `delay` seconds each way.

    Between the bot and Redis it widens the moment between reading a request and changing it,
    so concurrent clicks really do meet at the store instead of one after the other.
    """

    def __init__(self, upstream_port: int, delay: float = 0.02) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    async def start(self) -> LatencyProxy:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                await asyncio.sleep(self.delay)
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def settled(fake: FakeSlack, quiet: float = 0.2, timeout: float = 5.0) -> int:
    """Wait until the bot has made no Slack call for `quiet` seconds (background updates such
    as the App Home finish first); returns the fake's call count then."""
    deadline = time.monotonic() + timeout
    count = fake.mark()
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = fake.mark()
        if now == count:
            return count
        count = now
    return count


# --- a gate in front of the Slack Web API ----------------------------------------------------


class SlackGate:
    """A pass-through proxy to the fake Slack Web API that can hold one call: `hold(method)`
    arms it, the next call of that method waits at the gate (`held` is set) until `release()`.

    Lets a test act (stop Redis, say) at the exact moment between the bot's call and Slack's
    answer. Use `url` as SLACK_API_URL.
    """

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.held = asyncio.Event()
        self._method: str | None = None
        self._open = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._client: httpx.AsyncClient | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/api/"

    def hold(self, method: str) -> None:
        self._method = method
        self.held.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def start(self) -> SlackGate:
        self._client = httpx.AsyncClient(timeout=30)
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._client is not None
        method = request.match_info["method"]
        body = await request.read()
        if method == self._method:
            self._method = None
            self.held.set()
            await self._open.wait()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type")
        }
        query = f"?{request.query_string}" if request.query_string else ""
        answer = await self._client.request(
            request.method, f"{self.fake.url}{method}{query}", content=body, headers=headers
        )
        return web.Response(
            status=answer.status_code,
            body=answer.content,
            headers={
                k: v
                for k, v in answer.headers.items()
                if k.lower() in ("content-type", "retry-after")
            },
        )

    async def aclose(self) -> None:
        self._open.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.aclose()
