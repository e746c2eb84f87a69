"""Work after the acknowledgement: Bolt's lazy listeners, run by the follow-up worker.

Every listener is split in two, the Bolt way (`app.action(...)(ack=..., lazy=[...])`):
- its **ack function** does only what Slack must get in the acknowledgement (a modal's field
  errors or next view, a command's answer, a refusal) and what must be stored before it;
- its **lazy functions** do the rest (the CSE call, posting and updating messages, opening
  modals, replying through the `response_url`).

The app runs with `process_before_response=True`, so Slack gets its answer the moment the ack
function returns, and `FollowUps`, Bolt's lazy-listener runner here, starts the lazy functions.
With a worker process (`bot.worker`), it sends them there; otherwise, or for a function marked
`in_place`, or when the worker cannot take it, they run as tasks of this process, tracked so a
shutdown waits for them. Either way the same function runs on the same request; what the ack
function learnt that the lazy part needs (the request it created, say) travels with the request
as `hand_off` values, which are plain JSON.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.lazy_listener.async_internals import to_runnable_function
from slack_bolt.lazy_listener.async_runner import AsyncLazyListenerRunner
from slack_bolt.listener.async_listener_error_handler import AsyncListenerErrorHandler
from slack_bolt.listener.asyncio_runner import AsyncioListenerRunner
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot import metrics

log = logging.getLogger("bot.slack.followups")

HANDOFF = "handoff"  # the context key of the values an ack function hands to its lazy part
_IN_PLACE = "_runs_in_place"
_ONLY_IF = "_only_if_handed"

Lazy = Callable[..., Awaitable[None]]


async def acknowledge(ack: AsyncAck) -> None:
    """The ack function of a listener whose whole work comes after an empty acknowledgement."""
    await ack()


def hand_off(context: Any, **values: Any) -> None:
    """Give the lazy part of this listener `values` (JSON: they may cross to the worker)."""
    handed = dict(context.get(HANDOFF) or {})
    handed.update(values)
    context[HANDOFF] = handed


def handed(context: Mapping[str, Any]) -> dict[str, Any]:
    """What the ack function handed to this lazy function (empty when nothing)."""
    value = context.get(HANDOFF)
    return dict(value) if isinstance(value, dict) else {}


def in_place(func: Lazy) -> Lazy:
    """Run this lazy function in the process that acknowledged, never in the worker (it uses
    state that lives in that process's memory)."""
    setattr(func, _IN_PLACE, True)
    return func


def runs_in_place(func: Callable[..., Any]) -> bool:
    return bool(getattr(func, _IN_PLACE, False))


def only_if_handed(key: str) -> Callable[[Lazy], Lazy]:
    """Start this lazy function only when the ack function handed it `key` (a command whose
    answer was all in the ack needs no follow-up at all)."""

    def mark(func: Lazy) -> Lazy:
        setattr(func, _ONLY_IF, key)
        return func

    return mark


def wanted(func: Callable[..., Any], request: AsyncBoltRequest) -> bool:
    key = getattr(func, _ONLY_IF, None)
    return key is None or key in handed(request.context)


def after_ack(listen: Callable[..., Any]) -> Callable[[Lazy], Lazy]:
    """`@after_ack(app.action(...))`: an empty acknowledgement at once, then `func` as the
    listener's lazy function (errors in it answered to the person, see `later`)."""

    def register(func: Lazy) -> Lazy:
        listen(ack=acknowledge, lazy=[later(func)])
        return func

    return register


class Sink(Protocol):
    """Where lazy work goes when it leaves this process (the follow-up worker)."""

    def send(self, frame: bytes, run_here: Callable[[], None]) -> bool:
        """Queue one frame; False when it cannot be taken (the worker is not running). If the
        worker dies before starting it, `run_here` runs it in this process instead."""
        ...


def encode(request: AsyncBoltRequest) -> bytes:
    """One lazy request as a line of JSON: what the worker needs to dispatch it again.

    The body travels parsed: Slack's form encoding is slow to undo in Python (an Approve's
    payload holds the whole message), and the serving process has undone it already."""
    headers = {
        name: values[0]
        for name, values in request.headers.items()
        if name in ("content-type", "x-slack-bolt-lazy-function-name") and values
    }
    frame = {
        "lazy": request.lazy_function_name,
        "body": request.body,
        "query": {k: list(v) for k, v in request.query.items()},
        "headers": headers,
        HANDOFF: handed(request.context),
    }
    return json.dumps(frame, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> AsyncBoltRequest:
    """The lazy-only request `encode` made (Bolt runs just the named lazy function for it)."""
    frame = json.loads(line)
    headers = dict(frame.get("headers") or {})
    headers["x-slack-bolt-lazy-only"] = "1"
    headers["x-slack-bolt-lazy-function-name"] = str(frame["lazy"])
    # Bolt takes an already parsed body only in Socket Mode form, and so it stays: the mode
    # matters to signature verification, which the worker does not do (its parent verified the
    # request), and to copies, which then keep the parsed body.
    return AsyncBoltRequest(
        body=frame["body"],
        query=frame.get("query") or {},
        headers=headers,
        context={HANDOFF: frame.get(HANDOFF) or {}},
        mode="socket_mode",
    )


class FollowUps(AsyncLazyListenerRunner):
    """Bolt's lazy-listener runner: to the worker when there is one, else a tracked task here."""

    def __init__(self, logger: logging.Logger, sink: Sink | None = None) -> None:
        self.logger = logger
        self.sink = sink
        self._tasks: set[asyncio.Future[None]] = set()
        self.sent = 0  # lazy functions handed to the worker (for tests and the benchmark)

    def start(self, function: Lazy, request: AsyncBoltRequest) -> None:
        if not wanted(function, request):
            return
        if self.sink is not None and not runs_in_place(function):
            try:
                frame = encode(request)
            except (TypeError, ValueError):  # not JSON: cannot leave this process
                log.warning("a follow-up of %s runs here: it cannot be sent", function.__name__)
            else:
                if self.sink.send(frame, lambda: self.run_here(function, request)):
                    self.sent += 1
                    return
        self.run_here(function, request)

    async def run(self, function: Lazy, request: AsyncBoltRequest) -> None:
        """Run one lazy function now (the worker, for a lazy-only request). Bolt's own `run`
        (1.30) calls the coroutine `to_runnable_function` returns, which fails."""
        await to_runnable_function(function, self.logger, request)

    def run_here(self, function: Lazy, request: AsyncBoltRequest) -> None:
        metrics.FOLLOWUPS.labels("here").inc()
        self.track(to_runnable_function(function, self.logger, request))

    def track(self, work: Awaitable[Any]) -> None:
        """Finish `work` in this process; a shutdown waits for it (see `drain`)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the follow-ups running here; how many did not end."""
        pending = set(self._tasks)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=timeout)
        return len(still)


_ACK_FAILED = "ack_function_failed"


class _NoteFailure(AsyncListenerErrorHandler):
    """Bolt's listener error handler, noting on the request that its ack function failed."""

    def __init__(self, inner: AsyncListenerErrorHandler) -> None:
        self.inner = inner

    async def handle(
        self, error: Exception, request: AsyncBoltRequest, response: BoltResponse | None
    ) -> None:
        request.context[_ACK_FAILED] = True
        await self.inner.handle(error=error, request=request, response=response)


class ListenerRunner(AsyncioListenerRunner):
    """Bolt's asyncio listener runner, with two changes for lazy functions.

    - They start only when the ack function succeeded. Bolt starts them even when it raised (a
      modal's field errors, a refusal): a rejection whose reason was refused must not happen.
    - They get the request by reference.
    Bolt deep-copies the request and its context for each lazy function; the context holds the
    app's Web API client, whose shared connection pool cannot be copied (and copying every
    payload costs time on the acknowledging path). The ack function has returned by the time the
    lazy functions start, so they can share what it saw: a shallow copy of the request with its
    own context dict is enough.
    """

    def _start_lazy_function(
        self, lazy_func: Callable[..., Awaitable[None]], request: AsyncBoltRequest
    ) -> None:
        if request.context.get(_ACK_FAILED):
            return
        super()._start_lazy_function(lazy_func, request)

    def _build_lazy_request(
        self, request: AsyncBoltRequest, lazy_func_name: str
    ) -> AsyncBoltRequest:
        copied = copy.copy(request)
        copied.context = AsyncBoltContext(
            {k: v for k, v in request.context.items() if k != "listener_runner"}
        )
        copied.context["listener_runner"] = self
        copied.lazy_only = True
        copied.lazy_function_name = lazy_func_name
        return copied


def install(app: AsyncApp, followups: FollowUps) -> None:
    """Make `followups` the app's lazy-listener runner (with `ListenerRunner` around it)."""
    current = app.listener_runner
    app._async_listener_runner = ListenerRunner(  # Bolt has no setter for it
        logger=current.logger,
        process_before_response=current.process_before_response,
        listener_error_handler=_NoteFailure(current.listener_error_handler),
        listener_start_handler=current.listener_start_handler,
        listener_completion_handler=current.listener_completion_handler,
        lazy_listener_runner=followups,
    )


def later(func: Lazy) -> Lazy:
    """A lazy function whose errors are answered to the person who acted (Bolt only logs errors
    in lazy functions): `handle_error` tells them, as it does after any acknowledgement."""
    from bot.slack.errors import handle_error  # errors imports views; avoid an import cycle

    wanted = list(inspect.signature(func).parameters)
    names = list(dict.fromkeys([*wanted, "body", "client", "context"]))

    async def lazy(**kwargs: Any) -> None:
        try:
            await func(**{name: kwargs[name] for name in wanted})
        except Exception as error:
            await handle_error(error, kwargs["body"], None, kwargs["client"], kwargs["context"])

    lazy.__name__ = func.__name__
    lazy.__qualname__ = func.__qualname__
    lazy.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    )
    for mark in (_IN_PLACE, _ONLY_IF):
        if hasattr(func, mark):
            setattr(lazy, mark, getattr(func, mark))
    return lazy


__all__ = [
    "HANDOFF",
    "FollowUps",
    "Sink",
    "acknowledge",
    "after_ack",
    "decode",
    "encode",
    "hand_off",
    "handed",
    "in_place",
    "later",
    "only_if_handed",
]
