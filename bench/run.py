"""`python -m bench`: start everything, measure, print one table, write bench/RESULTS.md.

Order of a run:
1. the schedule engine, while the machine is quiet (in this process);
2. Redis (ours, unless REDIS_URL), the fakes host, the bare app and the bot as processes, each
   timed from spawn to `/healthz` 200;
3. preparation through the bot itself: modals really opened, requests really made pending;
4. a warm-up, then ack latency per kind at each concurrency, bot and bare app interleaved;
5. the full flow (Approve → created-policy message at the fake Slack, CSE answering in 50 ms);
6. resident memory of the bot;
7. Redis cost: the bot restarted behind a counting proxy, whole requests one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from bench import PROJECT_ROOT
from bench.host_client import FakesHost
from bench.load import App, Interleaved, Payload, Summary, closed_loop, interleaved, sender
from bench.procs import (
    LOOPBACK,
    BenchError,
    Child,
    Processes,
    child_env,
    children_of,
    cpu_seconds,
    free_port,
    python_argv,
    rss_bytes,
    start_redis,
    wait_http_ok,
)
from bench.profile import recording, summarise
from bench.redis_probe import CountingProxy, Counts, commandstats, delta, settle
from bench.report import (
    CONCURRENCY,
    KINDS,
    AckRow,
    FlowRow,
    Machine,
    RedisPath,
    RedisStep,
    Results,
    console_table,
    project_commit,
    write_json,
    write_results_md,
)
from bench.schedule_bench import time_chosen, worst_over_sample

CSE_DELAY = 0.050
CREATED_HEADER = "CSE backup policy created"
RESULT_TIMEOUT = 30.0  # seconds an approval may take to show its outcome
STARTUP_TIMEOUT = 30.0
RSS_AFTER = 1000
QUICK_CREATE = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason="bench"'
# The once-a-second background sweep starts with ZRANGEBYSCORE (due_for_expiry, stale_approved);
# nothing a request sets off uses it (the Home tab's viewers list is ZREVRANGEBYSCORE).
SWEEP_COMMANDS = {"ZRANGEBYSCORE"}
COMMAND_TEXTS = {"help": "help", "preview": "preview 0 2 * * *", "create": QUICK_CREATE}


@dataclass(frozen=True)
class Options:
    quick: bool
    write: bool
    json_path: Path | None
    requests: int  # per kind and concurrency, each for the bot and the bare app
    warmup: int  # per kind
    rounds: int  # bot/bare alternations per phase
    flow_c1: int
    flow_c32: int
    redis_runs: int
    schedule_sample: int
    schedule_repeats: int
    profile_dir: Path | None = None
    argv: tuple[str, ...] = ()

    @classmethod
    def parse(cls, argv: Sequence[str] | None) -> Options:
        parser = argparse.ArgumentParser(
            prog="python -m bench",
            description="Benchmark the bot against a bare Bolt app; writes bench/RESULTS.md.",
        )
        parser.add_argument(
            "--quick", action="store_true", help="a few requests each: checks that it runs"
        )
        parser.add_argument(
            "--no-write", dest="write", action="store_false", help="do not write RESULTS.md"
        )
        parser.add_argument("--json", dest="json_path", type=Path, help="also write JSON here")
        parser.add_argument(
            "--requests", type=int, help="requests per kind and concurrency (default 500)"
        )
        parser.add_argument(
            "--profile",
            dest="profile_dir",
            type=Path,
            help="record the bot with py-spy (concurrency-32 phases, full flow) into this folder",
        )
        args = parser.parse_args(argv)
        given = tuple(sys.argv[1:] if argv is None else argv)
        if args.profile_dir is not None:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
        if args.quick:
            requests = args.requests or 4
            return cls(
                True,
                args.write,
                args.json_path,
                requests,
                warmup=2,
                rounds=1,
                flow_c1=3,
                flow_c32=6,
                redis_runs=2,
                schedule_sample=40,
                schedule_repeats=5,
                profile_dir=args.profile_dir,
                argv=given,
            )
        requests = args.requests or 500
        if requests < 1:
            parser.error("--requests must be at least 1")
        return cls(
            False,
            args.write,
            args.json_path,
            requests,
            warmup=50,
            rounds=4,
            flow_c1=200,
            flow_c32=requests,
            redis_runs=15,
            schedule_sample=1000,
            schedule_repeats=200,
            profile_dir=args.profile_dir,
            argv=given,
        )


class Outcomes:
    """Futures for the outcome message of each request the bench approved."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[str, float]]] = {}
        self.unexpected = 0

    def expect(self, request_id: str) -> asyncio.Future[tuple[str, float]]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") != "result":
            return
        future = self._waiting.pop(str(event["request_id"]), None)
        if future is None or future.done():
            self.unexpected += 1
            return
        future.set_result((str(event["header"]), float(event["t"])))

    async def wait_all(self, futures: Sequence[asyncio.Future[tuple[str, float]]]) -> int:
        """Wait (bounded) for these outcomes; how many were not a created policy."""
        if not futures:
            return 0
        done, pending = await asyncio.wait(futures, timeout=RESULT_TIMEOUT)
        failed = len(pending)
        for future in done:
            header, _ = future.result()
            failed += header != CREATED_HEADER
        for future in pending:
            future.cancel()
        return failed


@dataclass
class Bench:
    options: Options
    procs: Processes
    host: FakesHost
    outcomes: Outcomes
    info: dict[str, Any]
    secret: str
    redis_url: str
    results: Results
    prepared_requests: int = 0
    worker_pid: int | None = None  # the bot's follow-up worker process, when it has one

    # --- processes -------------------------------------------------------------------------

    def bot_env(self, port: int, redis_url: str) -> dict[str, str]:
        return child_env(
            {
                "SLACK_BOT_TOKEN": str(self.info["bot_token"]),
                "SLACK_SIGNING_SECRET": self.secret,
                "SLACK_API_URL": str(self.info["slack_url"]),
                "CSE_ENDPOINT": str(self.info["cse_url"]),
                "CSE_AUTH_TOKEN": str(self.info["cse_token"]),
                "CSE_ENGINES": f"prod={self.info['engine_id']}",
                "REDIS_URL": redis_url,
                "REDIS_PREFIX": f"bench-{secrets.token_hex(4)}",
                "PORT": str(port),
            }
        )

    def start_bot(self, name: str, redis_url: str) -> tuple[Child, App, float]:
        port = free_port()
        child = self.procs.spawn(
            name, python_argv("-m", "bot", "run"), self.bot_env(port, redis_url)
        )
        base = f"http://{LOOPBACK}:{port}"
        try:
            seconds = wait_http_ok(child, f"{base}/healthz", STARTUP_TIMEOUT)
        except BenchError:
            self.procs.stop(child)
            raise
        return child, App("bot", base, self.secret), seconds

    def start_bare(self) -> tuple[Child, App, float]:
        port = free_port()
        env = {**self.bot_env(port, self.redis_url), "LOG_LEVEL": "WARNING"}
        child = self.procs.spawn("bare", python_argv("-m", "bench.bare_app"), env)
        base = f"http://{LOOPBACK}:{port}"
        seconds = wait_http_ok(child, f"{base}/healthz", STARTUP_TIMEOUT)
        return child, App("bare", base, self.secret), seconds

    # --- preparation, through the bot --------------------------------------------------------

    async def payloads(self, op: str, **args: Any) -> list[Payload]:
        return [Payload.from_json(p) for p in await self.host.call(op, **args)]

    async def make_pending(self, n: int) -> list[str]:
        ids: list[str] = await self.host.call("make_pending", n=n)
        self.prepared_requests += 2 * n
        return ids

    async def prepare(self, kind: str, n: int) -> tuple[list[Payload], list[str]]:
        """`n` payloads of `kind`; for Approve clicks, each on a distinct request made pending
        just now (so the bot does not carry a thousand pending requests through other phases),
        with the ids of those requests."""
        if kind in COMMAND_TEXTS:
            return await self.payloads("build_commands", text=COMMAND_TEXTS[kind], n=n), []
        if kind == "view_submission":
            self.prepared_requests += n
            return await self.payloads("build_view_submissions", n=n), []
        ids = await self.make_pending(n)
        return await self.payloads("build_approvals", request_ids=ids), ids

    # --- measuring -------------------------------------------------------------------------

    def profiling(self, pid: int, phase: str) -> contextlib.AbstractContextManager[None]:
        """py-spy on the bot's serving process (and its follow-up worker, to `<phase>-worker`)."""
        if self.options.profile_dir is None:
            return contextlib.nullcontext()
        return self._recording_both(pid, self.options.profile_dir, phase)

    @contextlib.contextmanager
    def _recording_both(self, pid: int, directory: Path, phase: str) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            stack.enter_context(recording(pid, directory / f"{phase}.txt"))
            if self.worker_pid is not None:
                stack.enter_context(recording(self.worker_pid, directory / f"{phase}-worker.txt"))
            yield

    def summarise_profiles(self) -> None:
        if self.options.profile_dir is None:
            return
        for raw in sorted(self.options.profile_dir.glob("*.txt")):
            if raw.name.endswith(".summary.txt"):
                continue
            raw.with_suffix(".summary.txt").write_text(summarise(raw))

    def watched(self) -> dict[str, int]:
        """Every process whose CPU is measured: the children, and the bot's follow-up worker."""
        found = dict(self.procs.spawned)
        if self.worker_pid is not None:
            found["bot worker"] = self.worker_pid
        return found

    async def memory(self, bot: App, pid: int) -> None:
        """RSS_AFTER requests of several kinds (a tenth of them whole requests, made pending and
        approved), then the bot's resident memory."""
        payloads, ids = await self.prepare("approve", RSS_AFTER // 20)
        outcomes = [self.outcomes.expect(i) for i in ids]
        await closed_loop(len(payloads), 8, sender(bot, payloads))
        await self.outcomes.wait_all(outcomes)
        served = bot.sent + self.prepared_requests
        per_kind = (RSS_AFTER - served) // len(COMMAND_TEXTS)
        for index, text in enumerate(COMMAND_TEXTS.values()):
            count = per_kind if index else RSS_AFTER - served - per_kind * (len(COMMAND_TEXTS) - 1)
            chunk = await self.payloads("build_commands", text=text, n=count)
            await closed_loop(len(chunk), 8, sender(bot, chunk))
        await self.quiet()
        self.results.rss_bot = rss_bytes(pid)
        if self.worker_pid is not None:
            self.results.rss_worker = rss_bytes(self.worker_pid)
        self.results.rss_bot_after = bot.sent + self.prepared_requests

    async def quiet(self, still: float = 0.3, timeout: float = 10.0) -> None:
        """Until the bot has made no Slack call for `still` seconds (bounded): what it was set
        off to do (replies, message updates, Home tabs) is done."""
        deadline = time.monotonic() + timeout
        last = await self.host.call("slack_mark")
        since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = await self.host.call("slack_mark")
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= still:
                return

    @staticmethod
    def batch(concurrency: int) -> int:
        """Approve clicks are measured in batches of requests made pending just before, so the
        bot never carries more pending requests than this (a real backlog is small; the bot's
        sweep and Home tab read every pending request)."""
        return max(16, 3 * concurrency)

    async def ack_phases(self, bot: App, bare: App, pid: int) -> None:
        opts = self.options
        progress("warm-up")
        # At the highest concurrency, so both apps (and the client) hold all their connections
        # before the first measured block: otherwise that block pays for opening them.
        for kind, _ in KINDS:
            warm, ids = await self.prepare(kind, opts.warmup)
            outcomes = [self.outcomes.expect(i) for i in ids]
            await closed_loop(len(warm), max(CONCURRENCY), sender(bot, warm))
            await closed_loop(len(warm), max(CONCURRENCY), sender(bare, warm))
            await self.outcomes.wait_all(outcomes)
            await self.quiet()

        for concurrency in CONCURRENCY:
            for kind, _ in KINDS:
                if kind == "approve":
                    progress(f"ack approve at concurrency {concurrency}: {opts.requests} each")
                    done, used = await self.approve_phase(bot, bare, pid, concurrency)
                else:
                    progress(f"ack {kind} at concurrency {concurrency}: preparing")
                    chunk, _ = await self.prepare(kind, opts.requests)
                    await self.quiet()
                    progress(f"ack {kind} at concurrency {concurrency}: {len(chunk)} each")
                    profile = self.profiling(pid, f"ack-{kind}-c{concurrency}")
                    meter = CpuMeter(self.watched())
                    with profile if concurrency == 32 else contextlib.nullcontext():
                        done = await interleaved(
                            bot, chunk, bare, chunk, concurrency, opts.rounds, self.quiet
                        )
                    await self.quiet()
                    used = meter.used()
                self.results.ack.append(
                    AckRow(
                        kind,
                        concurrency,
                        Summary.of(done.bot),
                        Summary.of(done.bare),
                        used["bot"] / len(done.bot),
                        used["bare"] / len(done.bare),
                        used.get("bot worker", 0.0) / len(done.bot),
                    )
                )

    async def approve_phase(
        self, bot: App, bare: App, pid: int, concurrency: int
    ) -> tuple[Interleaved, dict[str, float]]:
        """Approve clicks in batches: make a batch pending, click it on the bot (and wait for
        every outcome), send the same payloads to the bare app; alternate which goes first."""
        done = Interleaved()
        used: dict[str, float] = {}
        failed = 0
        left = self.options.requests
        index = 0
        while left > 0:
            size = min(self.batch(concurrency), left)
            left -= size
            payloads, ids = await self.prepare("approve", size)
            await self.quiet()
            sides = [(bot, done.bot), (bare, done.bare)]
            for app, times in sides if index % 2 == 0 else sides[::-1]:
                outcomes = [self.outcomes.expect(i) for i in ids] if app is bot else []
                meter = CpuMeter(self.watched())
                profile = self.profiling(pid, f"ack-approve-c{concurrency}")
                with profile if concurrency == 32 and app is bot else contextlib.nullcontext():
                    latencies, wall = await closed_loop(size, concurrency, sender(app, payloads))
                failed += await self.outcomes.wait_all(outcomes)
                await self.quiet()
                times.extend(latencies)
                if app is bot:
                    done.bot_wall += wall
                else:
                    done.bare_wall += wall
                for name, seconds in meter.used().items():
                    if (name == "bare") == (app is bare):  # each side's processes, its blocks
                        used[name] = used.get(name, 0.0) + seconds
            index += 1
        if failed:
            self.results.notes.append(
                f"{failed} of the approvals clicked at concurrency {concurrency} did not end in "
                "a created policy"
            )
        return done, used

    async def bare_only(self, bare: App) -> None:
        """The bare app's rows when the bot cannot run (its payloads built without the bot)."""
        n = self.options.requests
        for concurrency in CONCURRENCY:
            for kind, _ in KINDS:
                if kind not in COMMAND_TEXTS:  # its payloads come from the bot's own views
                    self.results.ack.append(AckRow(kind, concurrency, None, None))
                    continue
                chunk = await self.payloads("build_commands", text=COMMAND_TEXTS[kind], n=n)
                times, _ = await closed_loop(n, concurrency, sender(bare, chunk))
                self.results.ack.append(AckRow(kind, concurrency, None, Summary.of(times)))

    async def full_flow(self, bot: App, pid: int) -> None:
        opts = self.options
        await self.host.call("cse_delay", seconds=CSE_DELAY)
        phases = [(1, min(5, opts.flow_c1), False), (1, opts.flow_c1, True)]
        phases.append((32, opts.flow_c32, True))
        for concurrency, n, record in phases:
            if record:
                progress(f"full flow at concurrency {concurrency}: {n} approvals")
            latencies: list[float] = []
            wall = 0.0
            failures = 0
            used: dict[str, float] = {}
            left = n
            while left > 0:
                size = min(self.batch(concurrency), left)
                left -= size
                payloads, ids = await self.prepare("approve", size)
                await self.quiet()

                async def one(
                    i: int, ids: list[str] = ids, payloads: list[Payload] = payloads
                ) -> float:
                    nonlocal failures
                    future = self.outcomes.expect(ids[i])
                    sent = time.monotonic()
                    await bot.send(payloads[i])
                    try:
                        header, arrived = await asyncio.wait_for(future, RESULT_TIMEOUT)
                    except TimeoutError:
                        failures += 1
                        return RESULT_TIMEOUT
                    failures += header != CREATED_HEADER
                    return arrived - sent

                meter = CpuMeter(self.watched())
                profile = self.profiling(pid, f"flow-c{concurrency}")
                with profile if record else contextlib.nullcontext():
                    batch_latencies, batch_wall = await closed_loop(size, concurrency, one)
                for name, seconds in meter.used().items():
                    used[name] = used.get(name, 0.0) + seconds
                latencies += batch_latencies
                wall += batch_wall
                await self.quiet()
            if not record:
                continue  # warm-up
            self.results.cpu_share[f"full flow, c={concurrency}"] = {
                name: used[name] / wall
                for name in ("bot", "bot worker", "fakes-host", "redis", "bench")
                if name in used
            }
            self.results.flow.append(
                FlowRow(concurrency, Summary.of(latencies), n / wall, CSE_DELAY, failures)
            )
            if failures:
                self.results.notes.append(
                    f"full flow at concurrency {concurrency}: {failures} of {n} "
                    "approvals did not end in a created policy within "
                    f"{RESULT_TIMEOUT:.0f} s"
                )

    async def redis_cost(self) -> None:
        """Whole requests one at a time through a bot behind the counting proxy."""
        assert self.results.redis == []
        host, port = _redis_address(self.redis_url)
        proxy = CountingProxy(host, port)
        await proxy.start()
        stats = redis.from_url(self.redis_url)
        child: Child | None = None
        app: App | None = None
        try:
            child, app, _ = self.start_bot("bot-redis", proxy.url)
            await self.host.call("configure", app_url=app.base_url, secret=self.secret)
            await self.host.call("cse_delay", seconds=CSE_DELAY)
            await settle(stats)
            before = sum((await commandstats(stats)).values())
            await asyncio.sleep(1.0)
            idle = sum((await commandstats(stats)).values()) - before
            self.results.redis_idle_per_s = float(idle)

            async def snapshot() -> Snapshot:
                await settle(stats)
                return Snapshot(await commandstats(stats), proxy.counts())

            def step(name: str, before: Snapshot, after: Snapshot) -> StepWindow:
                counts = after.proxy.minus(before.proxy)
                names = proxy.names[before.proxy.names_seen : after.proxy.names_seen]
                return StepWindow(name, delta(after.stats, before.stats), counts, names)

            modal_runs: list[list[StepWindow]] = []
            quick_runs: list[list[StepWindow]] = []
            for run in range(self.options.redis_runs):
                progress(f"Redis cost: whole request {run + 1} of {self.options.redis_runs}")
                opened = await self.host.call("step_open_modal")
                s0 = await snapshot()
                answer = await self.host.call("step_submit_form", **opened)
                if answer.get("response_action") != "update":
                    raise BenchError(f"the form's first submit answered {answer}")
                s1 = await snapshot()
                request_id = await self.host.call("step_confirm", **opened)
                s2 = await snapshot()
                await self.approve_and_wait(request_id)
                s3 = await snapshot()
                modal_runs.append(
                    [
                        step("submit form", s0, s1),
                        step("request approval", s1, s2),
                        step("approve → created", s2, s3),
                    ]
                )
                q0 = await snapshot()
                made = await self.host.call("step_quick_create")
                q1 = await snapshot()
                await self.approve_and_wait(str(made["request_id"]))
                q2 = await snapshot()
                quick_runs.append(
                    [step("create + request approval", q0, q1), step("approve → created", q1, q2)]
                )
            for name, runs in (
                ("modal path (first submit → created)", modal_runs),
                ("quick path (command → created)", quick_runs),
            ):
                self.results.redis.append(redis_path(name, runs))
        finally:
            if app is not None:
                await app.close()
            if child is not None:
                self.procs.stop(child)
            await stats.aclose()
            await proxy.close()

    async def approve_and_wait(self, request_id: str) -> None:
        future = self.outcomes.expect(request_id)
        status = await self.host.call("step_approve", request_id=request_id)
        if status != 200:
            raise BenchError(f"Approve answered HTTP {status}")
        header, _ = await asyncio.wait_for(future, RESULT_TIMEOUT)
        if header != CREATED_HEADER:
            raise BenchError(f"the approval of {request_id} ended in {header!r}")


def _redis_address(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or LOOPBACK, parts.port or 6379


class CpuMeter:
    """CPU seconds each child (and this process, as `bench`) uses from now on."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = {**pids, "bench": os.getpid()}
        self._start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def used(self) -> dict[str, float]:
        return {
            name: max(0.0, cpu_seconds(pid) - self._start[name]) for name, pid in self._pids.items()
        }


@dataclass(frozen=True)
class Snapshot:
    stats: dict[str, int]
    proxy: Counts


@dataclass(frozen=True)
class StepWindow:
    """What one step of one request asked of Redis."""

    name: str
    stats: dict[str, int]  # commandstats delta
    counts: Counts  # proxy delta
    names: list[str]  # the commands the bot sent, in order

    @property
    def swept(self) -> bool:
        """The bot's once-a-second background sweep ran inside this window."""
        return bool(SWEEP_COMMANDS & set(self.names)) or bool(
            SWEEP_COMMANDS & {c.upper() for c in self.stats}
        )


def redis_path(name: str, runs: list[list[StepWindow]]) -> RedisPath:
    """Per step, the median over the runs whose window the sweep did not touch; the whole
    request is the sum of its steps."""
    steps: list[RedisStep] = []
    breakdown: dict[str, int] = {}
    for position in range(len(runs[0])):
        windows = [run[position] for run in runs]
        clean = [w for w in windows if not w.swept] or windows
        trips = int(statistics.median(w.counts.round_trips for w in clean))
        typical = next((w for w in clean if w.counts.round_trips == trips), clean[0])
        steps.append(
            RedisStep(
                windows[0].name,
                int(statistics.median(sum(w.stats.values()) for w in clean)),
                int(statistics.median(w.counts.commands for w in clean)),
                trips,
                max(w.counts.round_trips for w in clean),
                sum(not w.swept for w in windows),
                list(typical.names),
            )
        )
        for command, calls in typical.stats.items():
            breakdown[command] = breakdown.get(command, 0) + calls
    return RedisPath(
        name=name,
        runs=len(runs),
        steps=steps,
        total_commands=sum(s.commands for s in steps),
        total_sent=sum(s.sent for s in steps),
        total_round_trips=sum(s.round_trips for s in steps),
        max_round_trips=sum(s.max_round_trips for s in steps),
        breakdown=dict(sorted(breakdown.items())),
    )


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def run(options: Options) -> Results:
    results = Results(
        mode="quick" if options.quick else "full",
        machine=Machine.describe(),
        requests_per_kind=options.requests,
        command=" ".join(["python -m bench", *options.argv]),
        commit=project_commit(PROJECT_ROOT),
    )
    if options.profile_dir is not None:
        results.notes.append("recorded with py-spy running (--profile): it costs CPU too")
    progress("schedule engine")
    results.schedule = time_chosen(options.schedule_repeats)
    results.sample = worst_over_sample(options.schedule_sample)

    outcomes = Outcomes()
    with Processes() as procs:
        host = FakesHost(procs, outcomes.on_event)
        try:
            redis_url = os.environ.get("REDIS_URL") or start_redis(procs).url
            if os.environ.get("REDIS_URL"):
                results.notes.append(
                    "REDIS_URL was given: Redis command counts include any other traffic on it"
                )
            await host.start()
            info = await host.call("info")
            bench = Bench(
                options, procs, host, outcomes, info, secrets.token_hex(16), redis_url, results
            )
            await measure(bench)
        finally:
            await host.close()
            results.processes = dict(procs.spawned)
    return results


async def measure(bench: Bench) -> None:
    results = bench.results
    progress("starting the bare app and the bot")
    bare_child, bare, results.startup_bare = bench.start_bare()
    bot: App | None = None
    bot_child: Child | None = None
    try:
        try:
            bot_child, bot, results.startup_bot = bench.start_bot("bot", bench.redis_url)
        except BenchError as exc:
            results.bot_error = str(exc)
            results.notes.append(f"bot not available: {_first_lines(str(exc))}")
            progress(f"bot not available: {_first_lines(str(exc))}")
        if bot is None or bot_child is None:
            await bench.host.call("configure", app_url=bare.base_url, secret=bench.secret)
            await bench.bare_only(bare)
            results.rss_bare = rss_bytes(bare_child.pid)
            return
        await bench.host.call("configure", app_url=bot.base_url, secret=bench.secret)
        await bench.host.call("cse_delay", seconds=CSE_DELAY)
        workers = children_of(bot_child.pid)  # started before the bot listens
        bench.worker_pid = workers[0] if workers else None
        results.notes.append(
            "the bot ran as two processes, serving and follow-up worker; the worker's CPU is "
            "shown beside the serving process's"
            if bench.worker_pid
            else "the bot ran as one process (no follow-up worker)"
        )
        progress(f"{RSS_AFTER} requests, then the bot's memory")
        await bench.memory(bot, bot_child.pid)
        await bench.ack_phases(bot, bare, bot_child.pid)
        await bench.full_flow(bot, bot_child.pid)
        served = bot.sent + bench.prepared_requests
        results.rss_bot_end, results.rss_bot_end_after = rss_bytes(bot_child.pid), served
        results.rss_bare = rss_bytes(bare_child.pid)
        results.slack_calls = await bench.host.call("slack_calls")
    finally:
        await bare.close()
        if bot is not None:
            await bot.close()
        if bot_child is not None:
            bench.procs.stop(bot_child)
        bench.procs.stop(bare_child)
        bench.summarise_profiles()
    try:
        await bench.redis_cost()
    except BenchError as exc:
        results.redis_error = _first_lines(str(exc))
        results.notes.append(f"Redis cost not measured: {results.redis_error}")


def _first_lines(text: str, count: int = 3) -> str:
    return " ".join(text.strip().splitlines()[:count])


def main(argv: Sequence[str] | None = None) -> int:
    options = Options.parse(argv)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every finally, which stops the children

    signal.signal(signal.SIGTERM, terminate)
    try:
        results = asyncio.run(run(options))
    except KeyboardInterrupt:
        print("[bench] interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"[bench] failed: {exc}", file=sys.stderr)
        return 1
    print(console_table(results))
    for note in results.notes:
        print(f"note: {note}")
    if options.json_path is not None:
        write_json(results, options.json_path)
    if options.write:
        path = PROJECT_ROOT / "bench" / "RESULTS.md"
        write_results_md(results, path)
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0
