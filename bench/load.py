"""Sending Slack's requests and timing them: signing, closed-loop concurrency, percentiles."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

JSON = dict[str, Any]
REQUEST_TIMEOUT = 30.0  # seconds; Slack itself gives up after 3


class AckFailed(RuntimeError):
    """The app answered something other than HTTP 200."""


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers for `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


@dataclass(frozen=True)
class Payload:
    """One request as Slack would send it, not yet signed."""

    body: bytes
    content_type: str

    @classmethod
    def from_json(cls, obj: JSON) -> Payload:
        return cls(str(obj["body"]).encode(), str(obj["content_type"]))


class App:
    """An app under test, reached over loopback with keep-alive connections."""

    def __init__(self, name: str, base_url: str, signing_secret: str, pool: int = 64) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.events_url = f"{self.base_url}/slack/events"
        self._secret = signing_secret.encode()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool, limit_per_host=pool),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )
        self.sent = 0  # requests answered so far

    async def send(self, payload: Payload) -> float:
        """POST `payload`; seconds from sending to the whole HTTP response read."""
        headers = {"Content-Type": payload.content_type, **sign(self._secret, payload.body)}
        started = time.perf_counter()
        async with self._session.post(self.events_url, data=payload.body, headers=headers) as r:
            await r.read()
            elapsed = time.perf_counter() - started
            status = r.status
        self.sent += 1
        if status != 200:
            raise AckFailed(f"{self.name} answered HTTP {status}")
        return elapsed

    async def close(self) -> None:
        await self._session.close()


async def closed_loop(
    n: int, concurrency: int, one: Callable[[int], Awaitable[float]]
) -> tuple[list[float], float]:
    """Run `one(i)` for i in 0..n-1 with `concurrency` in flight; (its results, wall seconds)."""
    results: list[float] = [0.0] * n
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < n:
            index = next_index
            next_index += 1
            results[index] = await one(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
    return results, time.perf_counter() - started


def sender(app: App, payloads: Sequence[Payload]) -> Callable[[int], Awaitable[float]]:
    """`one(i)` for closed_loop: send the i-th payload to `app`."""

    def one(index: int) -> Awaitable[float]:
        return app.send(payloads[index])

    return one


async def interleaved(
    bot: App,
    bot_payloads: Sequence[Payload],
    bare: App,
    bare_payloads: Sequence[Payload],
    concurrency: int,
    rounds: int,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> Interleaved:
    """Alternate blocks of requests to the bot and to the bare app (never both at once), so
    both meet the same machine over the same minutes. `settle` runs after each block: what a
    block set off (the bot's replies after its acks) then never lands in the next one."""
    result = Interleaved()
    rounds = max(1, min(rounds, len(bot_payloads), len(bare_payloads)))
    for index in range(rounds):
        order = [(bot, bot_payloads, result.bot), (bare, bare_payloads, result.bare)]
        if index % 2:
            order.reverse()
        for app, payloads, times in order:
            chunk = _chunk(payloads, index, rounds)
            latencies, wall = await closed_loop(len(chunk), concurrency, sender(app, chunk))
            times.extend(latencies)
            if app is bot:
                result.bot_wall += wall
            else:
                result.bare_wall += wall
            if settle is not None:
                await settle()
    return result


@dataclass
class Interleaved:
    bot: list[float] = field(default_factory=list)  # latencies, seconds
    bare: list[float] = field(default_factory=list)
    bot_wall: float = 0.0  # seconds spent in the bot's blocks
    bare_wall: float = 0.0


def _chunk(items: Sequence[Payload], index: int, rounds: int) -> Sequence[Payload]:
    size = math.ceil(len(items) / rounds)
    return items[index * size : (index + 1) * size]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            len(values), percentile(values, 50), percentile(values, 95), percentile(values, 99)
        )
