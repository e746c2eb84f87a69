"""Counting what the bot asks of Redis, without MONITOR.

Two views of the same traffic:

- `INFO commandstats` deltas on the benchmark's Redis: every command Redis executed, including
  the ones a Lua script runs with `redis.call` (Redis counts those too). The benchmark's own
  `INFO` calls are left out.
- A counting TCP proxy between the bot and Redis (`CountingProxy`): per connection it counts the
  commands the bot sent (RESP arrays) and the round trips, a round trip being a burst of bytes
  from the bot after which it waited for Redis to answer. A pipeline or a script is then one
  round trip, however many commands it carries, which is what the latency of a request pays.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import redis.asyncio as redis

from bench.procs import LOOPBACK

OWN_COMMANDS = {"info"}


async def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far (sub-commands as `client|setinfo`), without our INFO calls."""
    stats = await client.info("commandstats")
    counts: dict[str, int] = {}
    for key, value in stats.items():
        name = str(key).removeprefix("cmdstat_")
        if name in OWN_COMMANDS:
            continue
        calls = value.get("calls", 0) if isinstance(value, dict) else 0
        counts[name] = int(calls)
    return counts


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    changed = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(changed.items()) if v}


async def settle(client: redis.Redis, quiet: float = 0.15, timeout: float = 5.0) -> None:
    """Wait until Redis has executed nothing (but our INFO) for `quiet` seconds; bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = sum((await commandstats(client)).values())
    still_since = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.025)
        now = sum((await commandstats(client)).values())
        if now != last:
            last, still_since = now, loop.time()
        elif loop.time() - still_since >= quiet:
            return


class RespCounter:
    """Counts the commands in a client→server RESP stream (arrays of bulk strings) and notes
    their names, in order, into `names` (shared by every connection of a proxy)."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.commands = 0
        self.names = names if names is not None else []
        self._name_pending = False  # the next bulk string is a command's name
        self._buffer = bytearray()
        self._elements = 0  # bulk strings still expected in the current command
        self._bulk: int | None = None  # length of the bulk string being read
        self._inline = False

    def feed(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        pos = 0
        while pos < len(buf):
            if self._bulk is not None:
                if len(buf) - pos < self._bulk + 2:
                    break
                if self._name_pending:
                    self.names.append(bytes(buf[pos : pos + self._bulk]).decode("latin-1").upper())
                    self._name_pending = False
                pos += self._bulk + 2
                self._bulk = None
                self._elements -= 1
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            pos = end + 2
            if self._elements == 0:
                self.commands += 1
                if line.startswith(b"*"):
                    self._elements = int(line[1:])
                    self._name_pending = self._elements > 0
                else:  # an inline command, one line
                    self.names.append(line.split(b" ", 1)[0].decode("latin-1").upper())
            elif line.startswith(b"$"):
                length = int(line[1:])
                if length >= 0:
                    self._bulk = length
                else:
                    self._elements -= 1
            else:
                raise ValueError(f"unexpected RESP line from the client: {line[:40]!r}")
        del buf[:pos]


@dataclass
class Counts:
    round_trips: int = 0
    commands: int = 0
    connections: int = 0
    names_seen: int = 0  # how many command names the proxy had noted

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.round_trips - other.round_trips,
            self.commands - other.commands,
            self.connections - other.connections,
            self.names_seen - other.names_seen,
        )


@dataclass
class _Connection:
    parser: RespCounter
    waiting: bool = False  # the client has sent and Redis has not answered since
    round_trips: int = 0


class CountingProxy:
    """A loopback TCP proxy to Redis that counts round trips and commands, all connections."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._connections: list[_Connection] = []
        self.names: list[str] = []  # every command the bot sent, in order of arrival
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def counts(self) -> Counts:
        return Counts(
            round_trips=sum(c.round_trips for c in self._connections),
            commands=sum(c.parser.commands for c in self._connections),
            connections=len(self._connections),
            names_seen=len(self.names),
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        connection = _Connection(RespCounter(self.names))
        self._connections.append(connection)

        async def upstream() -> None:  # bot -> Redis
            while data := await reader.read(65536):
                if not connection.waiting:
                    connection.round_trips += 1
                    connection.waiting = True
                connection.parser.feed(data)
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:  # Redis -> bot
            while data := await up_reader.read(65536):
                connection.waiting = False
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        for pump in pumps:
            self._tasks.add(pump)
            pump.add_done_callback(self._tasks.discard)
        with contextlib.suppress(Exception):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for stream in (writer, up_writer):
            with contextlib.suppress(Exception):
                stream.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
