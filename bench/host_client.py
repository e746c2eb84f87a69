"""The parent's side of bench.fakes_host: start it, call its ops, receive its events."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
from collections.abc import Callable
from typing import Any

from bench.procs import BenchError, Child, Processes, child_env, python_argv

JSON = dict[str, Any]
CALL_TIMEOUT = 300.0  # seconds: no op of the host takes longer, even preparing thousands


class FakesHost:
    """`python -m bench.fakes_host` as a child; `await call(op, **args)` runs one op there."""

    def __init__(self, procs: Processes, on_event: Callable[[JSON], None]) -> None:
        self._procs = procs
        self._on_event = on_event
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.child: Child | None = None

    async def start(self) -> None:
        self.child = self._procs.spawn(
            "fakes-host",
            python_argv("-m", "bench.fakes_host"),
            child_env({}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        stdout = self.child.process.stdout
        assert stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdout)
        self._reader = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = json.loads(line)
                if "event" in message:
                    self._on_event(message)
                    continue
                future = self._waiting.pop(message["id"], None)
                if future is None or future.done():
                    continue
                if message["ok"]:
                    future.set_result(message["result"])
                else:
                    future.set_exception(BenchError(f"fakes host: {message['error']}"))
        finally:
            tail = self.child.log_tail() if self.child else ""
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(BenchError(f"the fakes host stopped:\n{tail}"))
            self._waiting.clear()

    async def call(self, op: str, timeout: float = CALL_TIMEOUT, **args: Any) -> Any:
        if self.child is None or self.child.process.stdin is None:
            raise BenchError("the fakes host is not running")
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        line = json.dumps({"id": ident, "op": op, **args}) + "\n"
        stdin = self.child.process.stdin
        stdin.write(line.encode())
        stdin.flush()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BenchError(f"fakes host: {op} took longer than {timeout:.0f} s") from None
        finally:
            self._waiting.pop(ident, None)

    async def close(self) -> None:
        if self.child is not None and self.child.alive():
            with contextlib.suppress(Exception):
                await self.call("shutdown", timeout=10)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self.child is not None:
            self._procs.stop(self.child)
