"""The results of one run: one table for the console and bench/RESULTS.md, targets met or not."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.load import Summary
from bench.schedule_bench import SampleWorst, Timing

KINDS: tuple[tuple[str, str], ...] = (
    ("help", "`/cse-backup help`"),
    ("preview", "`/cse-backup preview 0 2 * * *`"),
    ("create", "quick-path `/cse-backup create engine=prod ...`"),
    ("view_submission", "view submission (form's first submit)"),
    ("approve", "Approve click"),
)
CONCURRENCY = (1, 32)
MB = 1024 * 1024

# The targets of issue 7 (on a 2-core machine).
ACK_RATIO_TARGET = 1.3
FLOW_OVERHEAD_TARGET = 0.030
ROUND_TRIPS_TARGET = 8
PREVIEW_TARGET = 0.005
REJECT_TARGET = 0.020
STARTUP_TARGET = 2.0
MEMORY_TARGET = 120 * MB


@dataclass
class AckRow:
    kind: str
    concurrency: int
    bot: Summary | None  # None: the bot could not run
    bare: Summary | None  # None: not measured (needs payloads made by the bot)
    bot_cpu: float | None = None  # CPU seconds the process used per request in this phase
    bare_cpu: float | None = None
    worker_cpu: float | None = None  # the bot's follow-up worker, per request, same phase

    def ratio(self, which: str) -> float | None:
        if self.bot is None or self.bare is None:
            return None
        bare = float(getattr(self.bare, which))
        return float(getattr(self.bot, which)) / bare if bare > 0 else None


@dataclass
class FlowRow:
    concurrency: int
    latency: Summary
    throughput: float  # approvals per second
    cse_delay: float
    failures: int

    @property
    def overhead_p50(self) -> float:
        return self.latency.p50 - self.cse_delay

    @property
    def overhead_p99(self) -> float:
        return self.latency.p99 - self.cse_delay


@dataclass
class RedisStep:
    name: str
    commands: int  # executed by Redis, Lua-internal included (median over clean runs)
    sent: int  # commands the bot sent (median)
    round_trips: int  # (median)
    max_round_trips: int  # the most in a clean run
    clean_runs: int  # runs the background sweep did not touch (0: none was clean)
    sequence: list[str]  # the commands sent in a typical clean run, in order


@dataclass
class RedisPath:
    name: str
    runs: int
    steps: list[RedisStep]
    total_commands: int  # sums of the steps' medians
    total_sent: int
    total_round_trips: int
    max_round_trips: int  # sum of the steps' maxima
    breakdown: dict[str, int]  # commandstats of a typical run, by command (Lua-internal too)


@dataclass
class Machine:
    nproc: int
    cpu_model: str
    python: str
    system: str
    date: str
    redis: str
    versions: dict[str, str]

    @classmethod
    def describe(cls) -> Machine:
        model = "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        try:
            redis = subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            redis = "not installed"
        versions = {}
        for name in ("slack-bolt", "slack-sdk", "aiohttp", "redis", "httpx"):
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = "?"
        return cls(
            nproc=len(os.sched_getaffinity(0)),
            cpu_model=model,
            python=platform.python_version(),
            system=f"{platform.system()} {platform.release()} {platform.machine()}",
            date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            redis=redis,
            versions=versions,
        )


@dataclass
class Results:
    mode: str
    machine: Machine
    requests_per_kind: int
    command: str = "python -m bench"
    commit: str = ""  # the project's git commit measured (+ "-dirty" with local changes)
    bot_error: str | None = None
    ack: list[AckRow] = field(default_factory=list)
    flow: list[FlowRow] = field(default_factory=list)
    redis: list[RedisPath] = field(default_factory=list)
    redis_idle_per_s: float | None = None
    redis_error: str | None = None
    schedule: list[Timing] = field(default_factory=list)
    sample: SampleWorst | None = None
    startup_bot: float | None = None
    startup_bare: float | None = None
    rss_bot: int | None = None  # bytes, after `rss_bot_after` requests
    rss_worker: int | None = None  # the bot's follow-up worker, at the same moment
    rss_bot_after: int = 0
    rss_bot_end: int | None = None
    rss_bot_end_after: int = 0
    rss_bare: int | None = None
    slack_calls: dict[str, int] = field(default_factory=dict)
    # phase -> process -> share of one core while the phase ran (bot phases only for the bot)
    cpu_share: dict[str, dict[str, float]] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid, all stopped at the end
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [dict(zip(HEADER, row, strict=True)) for row in table_rows(self)]
        data["targets"] = [asdict(t) for t in targets(self)]
        return data


# --- formatting --------------------------------------------------------------------------------

HEADER = ("measure", "bot", "bare Bolt", "bot/bare", "target", "met")
NOT_AVAILABLE = "bot not available"


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.2f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


def triple(summary: Summary | None, missing: str = NOT_AVAILABLE) -> str:
    if summary is None:
        return missing
    return f"{ms(summary.p50)} / {ms(summary.p95)} / {ms(summary.p99)}"


def ratio_text(row: AckRow) -> str:
    values = [row.ratio(w) for w in ("p50", "p95", "p99")]
    if any(v is None for v in values):
        return "-"
    return " / ".join(f"{v:.2f}" for v in values if v is not None)


def yes_no(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


@dataclass(frozen=True)
class Target:
    name: str
    target: str
    measured: str
    met: bool | None  # None: not measured


def targets(results: Results) -> list[Target]:
    found: list[Target] = []
    for row in results.ack:
        if row.concurrency != 32:
            continue
        ratio = row.ratio("p99")
        found.append(
            Target(
                f"ack p99 at c=32, {row.kind}",
                f"≤ {ACK_RATIO_TARGET}× bare Bolt",
                "bot not available" if ratio is None else f"{ratio:.2f}×",
                None if ratio is None else ratio <= ACK_RATIO_TARGET,
            )
        )
    flow1 = next((f for f in results.flow if f.concurrency == 1), None)
    found.append(
        Target(
            "full-flow overhead over the CSE call, p50 (c=1)",
            f"< {FLOW_OVERHEAD_TARGET * 1000:.0f} ms",
            "not measured" if flow1 is None else f"{ms(flow1.overhead_p50)} ms",
            None if flow1 is None else flow1.overhead_p50 < FLOW_OVERHEAD_TARGET,
        )
    )
    for path in results.redis:
        found.append(
            Target(
                f"Redis round trips, {path.name}",
                f"≤ {ROUND_TRIPS_TARGET}",
                f"{path.total_round_trips} (max {path.max_round_trips})",
                path.total_round_trips <= ROUND_TRIPS_TARGET,
            )
        )
    if not results.redis:
        found.append(Target("Redis round trips", f"≤ {ROUND_TRIPS_TARGET}", "not measured", None))
    previews = [t.p95 for t in results.schedule if t.kind == "preview"]
    if results.sample is not None:
        previews.append(results.sample.worst_preview)
    worst_preview = max(previews) if previews else None
    found.append(
        Target(
            "schedule preview, every valid expression (slowest p95, slowest drawn)",
            f"< {PREVIEW_TARGET * 1000:.0f} ms",
            f"{ms(worst_preview)} ms",
            None if worst_preview is None else worst_preview < PREVIEW_TARGET,
        )
    )
    rejects = [t.p95 for t in results.schedule if t.kind == "reject"]
    if results.sample is not None and results.sample.rejected:
        rejects.append(results.sample.worst_reject)
    worst_reject = max(rejects) if rejects else None
    found.append(
        Target(
            "reject a never-firing expression (slowest p95, slowest drawn)",
            f"< {REJECT_TARGET * 1000:.0f} ms",
            f"{ms(worst_reject)} ms",
            None if worst_reject is None else worst_reject < REJECT_TARGET,
        )
    )
    found.append(
        Target(
            "start-up, process start → /healthz 200",
            f"< {STARTUP_TARGET:.0f} s",
            "bot not available" if results.startup_bot is None else f"{results.startup_bot:.2f} s",
            None if results.startup_bot is None else results.startup_bot < STARTUP_TARGET,
        )
    )
    found.append(
        Target(
            f"resident memory after {results.rss_bot_after:,} requests, serving process",
            f"< {MEMORY_TARGET // MB} MB",
            "bot not available" if results.rss_bot is None else f"{results.rss_bot / MB:.1f} MB",
            None if results.rss_bot is None else results.rss_bot < MEMORY_TARGET,
        )
    )
    if results.rss_bot is not None and results.rss_worker is not None:
        both = results.rss_bot + results.rss_worker
        found.append(
            Target(
                "resident memory, serving process + follow-up worker",
                f"< {MEMORY_TARGET // MB} MB",
                f"{both / MB:.1f} MB",
                both < MEMORY_TARGET,
            )
        )
    return found


def table_rows(results: Results) -> list[tuple[str, str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str, str]] = []
    for row in results.ack:
        meets = ""
        if row.concurrency == 32:
            ratio = row.ratio("p99")
            meets = yes_no(None if ratio is None else ratio <= ACK_RATIO_TARGET)
        rows.append(
            (
                f"ack {row.kind}, c={row.concurrency}, p50/p95/p99 ms",
                triple(row.bot),
                triple(row.bare, "not measured"),
                ratio_text(row),
                f"p99 ≤ {ACK_RATIO_TARGET}×" if row.concurrency == 32 else "",
                meets,
            )
        )
    for kind, _ in KINDS:
        rows_of_kind = [r for r in results.ack if r.kind == kind and r.bot_cpu and r.bare_cpu]
        if not rows_of_kind:
            continue
        bot_cpu = [r.bot_cpu or 0.0 for r in rows_of_kind]
        bare_cpu = [r.bare_cpu or 0.0 for r in rows_of_kind]
        worker_cpu = [r.worker_cpu or 0.0 for r in rows_of_kind]
        levels = "/".join(str(r.concurrency) for r in rows_of_kind)
        worker = f" (+ worker {' / '.join(ms(v) for v in worker_cpu)})" if any(worker_cpu) else ""
        rows.append(
            (
                f"CPU per request {kind}, c={levels}, ms",
                " / ".join(ms(v) for v in bot_cpu) + worker,
                " / ".join(ms(v) for v in bare_cpu),
                " / ".join(f"{a / b:.2f}" for a, b in zip(bot_cpu, bare_cpu, strict=True)),
                "",
                "",
            )
        )
    for flow in results.flow:
        target = f"p50 overhead < {FLOW_OVERHEAD_TARGET * 1000:.0f} ms"
        rows.append(
            (
                f"full flow c={flow.concurrency} (CSE {ms(flow.cse_delay)} ms), p50/p95/p99 ms",
                triple(flow.latency),
                "",
                "",
                target if flow.concurrency == 1 else "",
                yes_no(flow.overhead_p50 < FLOW_OVERHEAD_TARGET) if flow.concurrency == 1 else "",
            )
        )
        rows.append(
            (
                f"full flow c={flow.concurrency}: overhead over CSE p50/p99 ms, approvals/s",
                f"{ms(flow.overhead_p50)} / {ms(flow.overhead_p99)}, {flow.throughput:.1f}/s",
                "",
                "",
                "",
                "",
            )
        )
    if not results.flow and results.bot_error:
        rows.append(("full flow", NOT_AVAILABLE, "", "", "", ""))
    for path in results.redis:
        for step in path.steps:
            rows.append(
                (
                    f"Redis {path.name}: {step.name} (commands run / sent / round trips)",
                    f"{step.commands} / {step.sent} / {step.round_trips}",
                    "",
                    "",
                    "",
                    "",
                )
            )
        rows.append(
            (
                f"Redis {path.name}: whole request (commands run / sent / round trips)",
                f"{path.total_commands} / {path.total_sent} / {path.total_round_trips}",
                "",
                "",
                f"≤ {ROUND_TRIPS_TARGET} round trips",
                yes_no(path.total_round_trips <= ROUND_TRIPS_TARGET),
            )
        )
    if not results.redis:
        why = results.redis_error or NOT_AVAILABLE
        rows.append(("Redis per request", why, "", "", "", ""))
    for timing in results.schedule:
        limit = PREVIEW_TARGET if timing.kind == "preview" else REJECT_TARGET
        verb = "preview (next 5 runs)" if timing.kind == "preview" else "reject"
        rows.append(
            (
                f"schedule {verb} `{timing.expression}` ({timing.label}), p50/p95/max ms",
                f"{ms(timing.p50)} / {ms(timing.p95)} / {ms(timing.worst)}",
                "",
                "",
                f"p95 < {limit * 1000:.0f} ms",
                yes_no(timing.p95 < limit),
            )
        )
    if results.sample is not None:
        sample = results.sample
        rows.append(
            (
                f"schedule preview, worst of {sample.size} Hypothesis expressions, ms",
                f"{ms(sample.worst_preview)} (`{sample.worst_expression}`, {sample.worst_zone})",
                "",
                "",
                f"< {PREVIEW_TARGET * 1000:.0f} ms",
                yes_no(sample.worst_preview < PREVIEW_TARGET),
            )
        )
        if sample.rejected:
            rows.append(
                (
                    f"schedule reject, worst of {sample.rejected} never-firing drawn, ms",
                    f"{ms(sample.worst_reject)} (`{sample.worst_reject_expression}`)",
                    "",
                    "",
                    f"< {REJECT_TARGET * 1000:.0f} ms",
                    yes_no(sample.worst_reject < REJECT_TARGET),
                )
            )
    rows.append(
        (
            "start-up, process start → /healthz 200, s",
            NOT_AVAILABLE if results.startup_bot is None else f"{results.startup_bot:.2f}",
            "-" if results.startup_bare is None else f"{results.startup_bare:.2f}",
            "",
            f"< {STARTUP_TARGET:.0f} s",
            yes_no(None if results.startup_bot is None else results.startup_bot < STARTUP_TARGET),
        )
    )
    rows.append(
        (
            f"RSS after {results.rss_bot_after:,} requests, serving process, MB",
            NOT_AVAILABLE if results.rss_bot is None else f"{results.rss_bot / MB:.1f}",
            "-" if results.rss_bare is None else f"{results.rss_bare / MB:.1f}",
            "",
            f"< {MEMORY_TARGET // MB} MB",
            yes_no(None if results.rss_bot is None else results.rss_bot < MEMORY_TARGET),
        )
    )
    if results.rss_bot is not None and results.rss_worker is not None:
        both = results.rss_bot + results.rss_worker
        rows.append(
            (
                "RSS, serving process + follow-up worker, MB",
                f"{results.rss_bot / MB:.1f} + {results.rss_worker / MB:.1f} = {both / MB:.1f}",
                "",
                "",
                f"< {MEMORY_TARGET // MB} MB",
                yes_no(both < MEMORY_TARGET),
            )
        )
    if results.rss_bot_end is not None and results.rss_bot_end_after > results.rss_bot_after:
        rows.append(
            (
                f"RSS at the end, after {results.rss_bot_end_after:,} requests, MB",
                f"{results.rss_bot_end / MB:.1f}",
                "",
                "",
                "",
                "",
            )
        )
    return rows


def console_table(results: Results) -> str:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: Results) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(HEADER), "| " + " | ".join("---" for _ in HEADER) + " |"]
    out += [line(row) for row in table_rows(results)]
    return "\n".join(out)


def machine_lines(machine: Machine) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in machine.versions.items())
    return [
        f"- Date: {machine.date}",
        f"- CPUs available (nproc): {machine.nproc}; CPU model: {machine.cpu_model}",
        f"- System: {machine.system}; Python {machine.python}",
        f"- {machine.redis}",
        f"- Packages: {versions}",
    ]


def write_json(results: Results, path: Path) -> None:
    path.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")


# --- bench/RESULTS.md --------------------------------------------------------------------------

NOTES_START = "<!-- analysis: kept when the file is regenerated -->"
NOTES_END = "<!-- end of analysis -->"

METHOD = """\
## How it is measured

Run `python -m bench` from the project root (with the venv active and `redis-server` installed);
`--quick` for a few requests each (CI), `--no-write` to leave this file alone, `--json FILE` for
the numbers, `--requests N` per kind, `--profile DIR` to record the bot with py-spy during the
concurrency-32 phases and the full flow (`pip install py-spy` first; it is not a project
dependency).

- **Processes.** Redis (`redis-server --save "" --appendonly no` on a free loopback port, unless
  `REDIS_URL` is set), the fake Slack Web API and fake CSE (tests/fakes, in a process of their
  own so they never share a GIL with the load generator), the bot (`python -m bot run`, HTTP
  mode, default settings: a JSON log line per request, as deployed; with Redis it runs as two
  processes, serving and follow-up worker) and the bare app (`python -m bench.bare_app`, which
  logs nothing), all on 127.0.0.1.
  Everything runs on the one machine, so at concurrency 32 the load generator and the fakes
  compete with the app for the cores (see the CPU shares above).
- **Bare Bolt app.** An `AsyncApp` whose listeners only `ack()` (the slash command; and, so each
  kind has a like-for-like baseline, one view and one action listener), served exactly as
  bot/web.py serves the bot: aiohttp, `to_bolt_request` → `async_dispatch` →
  `to_aiohttp_response`. It gets the very same signed payloads as the bot.
- **Ack latency.** Request sent → whole HTTP response read, by an aiohttp client with keep-alive
  connections, closed loop at concurrency 1 and 32. Bot and bare app alternate in blocks (never
  loaded at the same time), so both meet the same machine. The requests come from a team of 16
  requesters, each many times (per-user caches are warm after the warm-up, as in real use).
  Payloads are made through the bot before the clock starts: modals really opened with
  `/cse-backup create` (the view comes from the fake Slack's `views.open`), requests really made
  pending (quick path, then Request approval), so every Approve click is on a distinct pending
  request. Approve clicks (and full flows) go in batches of 16 at c=1 and 96 at c=32, each made
  pending just before, so the bot never carries a backlog a real team would not have (its sweep
  and its Home tabs read the pending requests). A warm-up at concurrency 32 opens every
  connection first; between phases the bench waits until the bot has made no Slack call for
  0.3 s. Signing happens before the clock.
- **CPU per request.** User + system CPU of the app's serving process during the phase (from
  /proc/<pid>/stat) divided by the requests; for the bot, the CPU of its follow-up worker (the
  child process that runs what comes after the ack: replies through the response_url,
  `views.open`, and for Approve the whole flow with the CSE call and the messages) is shown
  beside it as "+ worker". The phase includes the pause after each block until the bot has made
  no Slack call for 0.3 s, so the once-a-second background sweep counts too. At concurrency 32,
  where the serving core is the bottleneck, latency ≈ 32 × CPU per request.
- **Full flow.** Approve click sent → the created-policy `chat.postMessage` arriving at the fake
  Slack (stamped on arrival with CLOCK_MONOTONIC, which both processes share), the fake CSE
  answering after 50 ms. Overhead = latency − 50 ms. Throughput = approvals / wall time at
  concurrency 32.
- **Redis cost.** The bot is restarted behind a counting TCP proxy and whole requests run one at
  a time; after each step the bench waits until Redis has been idle for 150 ms. *Commands run*
  are `INFO commandstats` deltas (commands inside Lua scripts included, the bench's own INFO
  excluded); *sent* and *round trips* come from the proxy: it parses the RESP the bot sends
  (which also gives the command names below), and counts a round trip each time the bot sends
  after Redis has answered (a pipeline or a script is one). Everything a step sets off counts,
  also in the background (the Home tab republished after a change). The bot's once-a-second
  sweep is not the request's: it is recognised by its ZRANGEBYSCORE, which nothing else uses,
  and the steps it fell into are left out; each step is the median of the rest (or of all runs,
  if none is clean), a whole request the sum of its steps.
- **Schedule engine.** `bot.core.schedule.preview` (parse, describe, next 5 runs, lint) in this
  process; a never-firing expression is timed to its ScheduleError. The chosen expressions are
  timed 200 times each and judged on p95 (the engine is deterministic; a lone slow repeat is a
  garbage collection or the machine). The sample is drawn by a seeded Hypothesis strategy of
  valid 5-field expressions and macros (with never-firing ones now and then), in several zones
  including DST ones; each expression is the best of 3 timings, the table shows the slowest.
- **Start-up and memory.** Spawn → first `/healthz` 200 (polled every 5 ms); VmRSS from
  /proc/<pid>/status after the first 1,000 requests (help, preview and quick-path create
  commands, and 50 whole requests made pending and approved), and again at the end; the
  follow-up worker's VmRSS beside the serving process's. The memory target is judged twice: on
  the serving process, and on the two processes together (the bot as deployed with Redis).
"""


def runs_of(names: list[str]) -> list[str]:
    """["HGET", "HGET", "SET"] -> ["HGET ×2", "SET"]."""
    out: list[str] = []
    count = 0
    for index, name in enumerate(names):
        count += 1
        if index + 1 == len(names) or names[index + 1] != name:
            out.append(name if count == 1 else f"{name} ×{count}")
            count = 0
    return out


def _kept_notes(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError:
        return ""
    start, end = text.find(NOTES_START), text.find(NOTES_END)
    if start < 0 or end < start:
        return ""
    return text[start + len(NOTES_START) : end].strip("\n")


def results_markdown(results: Results, kept_notes: str = "") -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{results.command}` on commit `{results.commit or 'unknown'}` "
        + (
            "(`--quick`: a few requests each, numbers not meaningful)"
            if results.mode == "quick"
            else f"({results.requests_per_kind} requests per kind and concurrency)"
        )
        + ". Times in milliseconds unless stated; `bot/bare` is the bot's figure divided by the "
        "bare Bolt app's in the same run.",
        "",
        "## Machine",
        "",
        *machine_lines(results.machine),
        "",
        "## Results",
        "",
        markdown_table(results),
        "",
    ]
    if results.notes:
        lines += ["Notes from this run:", "", *[f"- {n}" for n in results.notes], ""]
    if results.redis:
        lines += ["Redis, step by step (commands the bot sent in a typical run, in order):", ""]
        for path in results.redis:
            spread = ", ".join(f"{k} {v}" for k, v in path.breakdown.items())
            lines.append(f"- {path.name}; executed by Redis, by command: {spread}")
            for step in path.steps:
                sent = " → ".join(runs_of(step.sequence)) or "nothing"
                lines.append(
                    f"  - {step.name}: {sent} ({step.round_trips} round "
                    f"trip{'s' * (step.round_trips != 1)}; "
                    f"{step.clean_runs} of {path.runs} runs free of the background sweep)"
                )
        if results.redis_idle_per_s is not None:
            lines.append(
                f"- idle bot (background sweep): {results.redis_idle_per_s:.0f} commands per second"
            )
        lines.append("")
    if results.cpu_share:
        lines += [
            "CPU used during the full-flow phases, by process (share of one core; the machine "
            f"has {results.machine.nproc}; the bench is the load generator):",
            "",
        ]
        for phase, shares in results.cpu_share.items():
            spread = ", ".join(f"{name} {100 * share:.0f}%" for name, share in shares.items())
            lines.append(f"- {phase}: {spread}")
        lines.append("")
    if results.slack_calls:
        calls = ", ".join(f"{k} {v}" for k, v in sorted(results.slack_calls.items()))
        lines += [f"Slack Web API calls the bot made during the run: {calls}.", ""]
    lines += ["## Targets (issue 7, on a 2-core machine)", ""]
    lines += ["| target | limit | measured | met |", "| --- | --- | --- | --- |"]
    for target in targets(results):
        lines.append(
            f"| {target.name} | {target.target} | {target.measured} | {yes_no(target.met)} |"
        )
    lines += ["", METHOD, "## Analysis", "", NOTES_START]
    lines += [kept_notes or "(no analysis recorded yet)", NOTES_END, ""]
    return "\n".join(lines)


def project_commit(root: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "bot"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}{'-dirty' if dirty else ''}"


def write_results_md(results: Results, path: Path) -> None:
    path.write_text(results_markdown(results, _kept_notes(path)))
