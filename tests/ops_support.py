"""Real processes for the operations tests: the bot (`python -m bot run` / `check`) and a private
`redis-server` (on a TCP port or a unix socket) that a test may stop and start again.

Every process is stopped by its own pid when the test ends, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from bot.settings import Settings
from tests.fakes.cse_server import FakeCse
from tests.fakes.slack_api import FakeSlack
from tests.slack_harness import BOT_TOKEN, PROD_ID, SIGNING_SECRET

WAIT = 20.0  # upper bound for anything a test waits for; never reached when things work


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ() -> dict[str, str]:
    """This process's environment without any of the bot's own settings."""
    names = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k.upper() not in names}


# --- redis-server ----------------------------------------------------------------------------


@dataclass
class RedisProcess:
    """A redis-server of the test's own: on a free TCP port, or (`unix=True`) on a unix socket
    only. The socket lives in a short directory of its own (socket paths are limited to about
    100 characters, and pytest's tmp_path can be longer)."""

    unix: bool = False
    appendonly: bool = False
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rds-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def url(self) -> str:
        if self.unix:
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0" if self.unix else str(self.port),
            "--save",
            "",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        if self.unix:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}")
            if self.answers():
                return self
            time.sleep(0.05)
        raise AssertionError("redis-server never answered PING")

    def answers(self) -> bool:
        client = (
            redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
            if self.unix
            else redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        )
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- the bot ---------------------------------------------------------------------------------


def bot_env(
    fake: FakeSlack, cse: FakeCse, *, redis_url: str, prefix: str, port: int, **extra: str
) -> dict[str, str]:
    env = clean_environ()
    env.update(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.url,
            "PORT": str(port),
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
            "CSE_ENDPOINT": cse.url,
            "CSE_AUTH_TOKEN": cse.static_token or "",
            "CSE_ENGINES": f"prod={PROD_ID}",
            "CSE_TIMEOUT": "20s",
            "APPROVAL_REMINDERS": "off",
        }
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class BotProcess:
    """`python -m bot run` with `env`, its stdout and stderr in one log file."""

    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.env["PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"bot-{self.port}.log"

    def start(self) -> BotProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    def _alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"the bot exited with {self.process.returncode}:\n{self.log_path.read_text()}"
            )

    async def wait_healthy(self) -> None:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                self._alive()
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the bot never answered /healthz")

    async def wait_ready(self, status: int = 200, saying: str | None = None) -> dict[str, Any]:
        """Poll /readyz until it answers `status` (with `saying` in its text, when given); its
        JSON body."""
        last: httpx.Response | None = None
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                self._alive()
                try:
                    last = await http.get(f"{self.url}/readyz")
                    if last.status_code == status and (saying is None or saying in last.text):
                        body: dict[str, Any] = last.json()
                        return body
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"/readyz never answered {status}; last: {last and last.text}")

    async def metrics(self) -> list[Sample]:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.url}/metrics")
        assert response.status_code == 200
        return [
            Sample(sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        ]

    async def wait_metric(self, name: str, at_least: float = 1, **labels: str) -> float:
        """Poll /metrics until the sum of `name` samples with `labels` reaches `at_least`."""
        found = 0.0
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = value(await self.metrics(), name, **labels)
            if found >= at_least:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name}{labels} stayed at {found}, wanted {at_least}")

    def log_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]

    def log_entries(self) -> list[dict[str, Any]]:
        """Every line of output as JSON: fails on the first line that is not one object."""
        entries = []
        for line in self.log_lines():
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}") from None
            assert isinstance(entry, dict), line
            entries.append(entry)
        return entries

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL to the bot and its follow-up worker (their own process group)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
