"""The command line: `cse-backup-bot [run | check | preview]` (CONTRACT §2).

Bad input is one line on stderr and a non-zero exit: 2 for a bad argument or schedule, 1 for a
configuration or dependency failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot import __version__

MAX_COUNT = 1000


class UsageError(Exception):
    """A bad command-line argument; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage dump) so scripts and people read it easily."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cse-backup-bot",
        description="Slack bot for Huawei Cloud CSE backup policies with two-person approval.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    commands.add_parser(
        "run",
        help="run the bot (Socket Mode when SLACK_APP_TOKEN is set, else HTTP on PORT)",
        description="Run the bot. Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode.",
    )
    commands.add_parser(
        "check",
        help="check the configuration and reach every dependency",
        description="Validate the configuration and reach Slack, Redis, IAM and CSE.",
    )
    commands.add_parser(
        "worker",
        help="the follow-up worker process (`run` starts it; not for use on its own)",
        description="The follow-up worker: `run` starts it and feeds it through its stdin.",
    )
    preview = commands.add_parser(
        "preview",
        help="show when a cron schedule runs, as the bot shows it in Slack",
        description="Show the normalised expression, its description, the next runs and warnings.",
    )
    preview.add_argument("cron", nargs="+", help='the cron expression, e.g. "0 2 * * *"')
    preview.add_argument("--count", type=int, default=5, help="how many runs (default 5)")
    preview.add_argument(
        "--tz",
        default=None,
        help="IANA zone the engine reads cron in (default CSE_SCHEDULE_TIMEZONE, else UTC)",
    )
    preview.add_argument(
        "--after", default=None, help="runs strictly after this ISO 8601 instant (default now)"
    )
    preview.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
        command = args.command or "run"
        if command == "preview":
            return _preview(args)
        if command == "check":
            return _check()
        if command == "worker":
            return _worker()
        return _run()
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2


# --- preview -------------------------------------------------------------------------------------


def _default_zone_name() -> str:
    """CSE_SCHEDULE_TIMEZONE from the environment or .env, else UTC; never the machine's zone."""
    from bot.settings import ConfigError, load_settings

    try:
        return load_settings().cse_schedule_timezone
    except ConfigError as exc:
        if "CSE_SCHEDULE_TIMEZONE" in str(exc):
            raise UsageError(str(exc)) from None
        return "UTC"  # another setting is broken; preview does not need it


def _zone(name: str | None) -> tzinfo:
    name = name if name is not None else _default_zone_name()
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--tz: {name!r} is not an IANA time zone name; use e.g. Europe/Berlin or UTC"
        ) from None


def _after(text: str | None, zone: tzinfo) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--after: {text!r} is not an ISO 8601 time; use e.g. 2026-03-29T00:00:00+01:00"
        ) from None
    # A time without an offset is read in the schedule's zone, the way the engine reads cron.
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _preview(args: argparse.Namespace) -> int:
    from bot.core.schedule import ScheduleError, preview

    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"--count: {args.count} is out of range; use 1 to {MAX_COUNT}")
    zone = _zone(args.tz)
    after = _after(args.after, zone)
    try:
        result = preview(" ".join(args.cron), zone=zone, after=after, count=args.count)
    except ScheduleError as exc:
        raise UsageError(" ".join(str(exc).split())) from None
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return 0
    print(render_preview_table(result))
    return 0


def render_preview_table(result: object) -> str:
    from bot.core.schedule import Preview

    assert isinstance(result, Preview)
    width = max(len(str(len(result.runs))), 1)
    rows = [
        ("Expression", result.expression),
        ("Description", result.description),
        ("Time zone", result.timezone),
    ]
    lines = [f"{label:<12} {value}" for label, value in rows]
    for index, run in enumerate(result.runs, start=1):
        label = "Next runs" if index == 1 else ""
        stamp = run.strftime("%a %Y-%m-%d %H:%M ") + _offset(run)
        lines.append(f"{label:<12} {index:>{width}}. {stamp}")
    if not result.runs:
        lines.append(f"{'Next runs':<12} none")
    if result.warnings:
        for index, warning in enumerate(result.warnings):
            lines.append(f"{'Warnings' if index == 0 else '':<12} ! {warning}")
    else:
        lines.append(f"{'Warnings':<12} none")
    return "\n".join(lines)


def _offset(moment: datetime) -> str:
    offset = moment.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"


# --- run and check -------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(1)


def _run() -> int:
    from bot.settings import ConfigError, load_settings

    try:
        settings = load_settings()
        settings.require_for_run()
    except ConfigError as exc:
        _fail(f"cse-backup-bot: {exc}")
    from bot.runtime import serve

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


def _worker() -> int:
    """The follow-up worker (started by `run` itself; its input is `run`'s pipe)."""
    from bot.settings import ConfigError, load_settings

    try:
        settings = load_settings()
        settings.require_for_run()
    except ConfigError as exc:
        _fail(f"cse-backup-bot worker: {exc}")
    from bot.worker import main as worker_main

    return worker_main(settings)


def _check() -> int:
    import logging

    from bot.check import run_checks
    from bot.settings import ConfigError, load_settings

    logging.basicConfig(level=logging.CRITICAL)  # the check lines are the output, not log noise

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"FAIL configuration: {exc}")
        return 1
    return asyncio.run(run_checks(settings))
