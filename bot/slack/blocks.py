"""Small Block Kit pieces shared by the messages and the views, built as plain dicts.

Each builder returns the JSON Slack receives, exactly as `slack_sdk.models` would write it
(`tests/test_blocks_plain.py` holds them to that): an attribute that is None or empty is left out,
`plain_text` carries `"emoji": true` where the bot sets it. Building the dicts directly costs a
fraction of making model objects and calling `to_dict()` (which validates every object again), on
the path that must answer Slack within 3 seconds. Nothing here validates: texts are clipped to
Slack's limits with `clip`, and every other value is the bot's own (ids, fixed labels).

User-typed text is escaped by the callers' use of `escape`/`code`; everything here that takes
`mrkdwn` takes it already safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.slack.escape import code, escape

SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
HEADER_LIMIT = 150

Json = dict[str, Any]
"""One Block Kit object (a block, an element, a text object, a view) as Slack's JSON."""


@dataclass(frozen=True)
class Message:
    """A message as sent: `text` is the notification / fallback line, `blocks` what is shown."""

    text: str
    blocks: list[Json] = field(default_factory=list)

    def payload(self) -> Json:
        return {"text": self.text, "blocks": self.blocks}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, *, emoji: bool = True) -> Json:
    """A `plain_text` object; `emoji=False` leaves the key out (slack_sdk's unset `emoji`)."""
    if not text:  # slack_sdk leaves an empty text out
        return {"type": "plain_text", "emoji": True} if emoji else {"type": "plain_text"}
    if emoji:
        return {"type": "plain_text", "text": text, "emoji": True}
    return {"type": "plain_text", "text": text}


def mrkdwn(text: str) -> Json:
    """A `mrkdwn` object of `text` as given (`md` clips it to a section's limit)."""
    return {"type": "mrkdwn", "text": text} if text else {"type": "mrkdwn"}


def md(text: str) -> Json:
    return mrkdwn(clip(text, SECTION_LIMIT))


def section(text: str) -> Json:
    return {"type": "section", "text": md(text)}


def fields_section(fields: list[str]) -> Json:
    return {"type": "section", "fields": [mrkdwn(clip(f, FIELD_LIMIT)) for f in fields[:10]]}


def header(text: str) -> Json:
    return {"type": "header", "text": plain(clip(text, HEADER_LIMIT))}


def context(*lines: str) -> Json:
    return {"type": "context", "elements": [md(line) for line in lines[:10]]}


def divider() -> Json:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str, style: str | None = None) -> Json:
    element: Json = {"type": "button", "text": plain(text), "action_id": action_id, "value": value}
    if style is not None:
        element["style"] = style
    return element


def actions(block_id: str, *elements: Json) -> Json:
    return {"type": "actions", "block_id": block_id, "elements": list(elements)}


# --- time ----------------------------------------------------------------------------------------


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Slack shows the moment in each reader's own time zone; the fallback is UTC."""
    utc = moment.astimezone(UTC)
    fallback = utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(utc.timestamp())}^{fmt}|{fallback}>"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def wall(moment: datetime, zone: ZoneInfo) -> str:
    """`Mon 06 Jan 2025 02:00 CET` in `zone` (English names whatever the process's locale)."""
    t = moment.astimezone(zone)
    day, month, abbreviation = _DAYS[t.weekday()], _MONTHS[t.month - 1], t.tzname() or zone.key
    return f"{day} {t.day:02d} {month} {t.year} {t.hour:02d}:{t.minute:02d} {abbreviation}"


def run_lines(runs: list[datetime], zone: ZoneInfo, user_zone: ZoneInfo | None) -> list[str]:
    other = user_zone if user_zone is not None and user_zone.key != zone.key else None
    lines = []
    for run in runs:
        line = f"• {wall(run, zone)}"
        if other is not None:
            line += f"  (your time: {wall(run, other)})"
        lines.append(line)
    return lines


def preview_blocks(
    *,
    expression: str,
    description: str,
    zone: ZoneInfo,
    runs: list[datetime],
    warnings: list[str],
    user_zone: ZoneInfo | None = None,
) -> list[Json]:
    """The schedule preview people see before anything is stored or approved."""
    other = user_zone is not None and user_zone.key != zone.key
    title = f"*Next {len(runs)} runs* ({escape(zone.key)}"
    title += f"; your time zone is {escape(user_zone.key)})" if other and user_zone else ")"
    blocks: list[Json] = [
        section(f"*Schedule (cron)* {code(expression)}\n{escape(description)}"),
        section(title + "\n" + "\n".join(run_lines(runs, zone, user_zone))),
    ]
    if warnings:
        blocks.append(section("\n".join(f":warning: {escape(w)}" for w in warnings[:10])))
    return blocks
