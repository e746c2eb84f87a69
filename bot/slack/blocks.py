"""Small Block Kit pieces shared by the messages and the views (typed `slack_sdk.models`).

User-typed text is escaped by the callers' use of `escape`/`code`; everything here that takes
`mrkdwn` takes it already safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.slack.escape import code, escape

SECTION_LIMIT = 3000
FIELD_LIMIT = 2000


@dataclass(frozen=True)
class Message:
    """A message as sent: `text` is the notification / fallback line, `blocks` what is shown."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def dump(blocks: list[Block]) -> list[dict[str, Any]]:
    return [block.to_dict() for block in blocks]


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(text, SECTION_LIMIT))


def section(text: str) -> SectionBlock:
    return SectionBlock(text=md(text))


def fields_section(fields: list[str]) -> SectionBlock:
    return SectionBlock(fields=[MarkdownTextObject(text=clip(f, FIELD_LIMIT)) for f in fields[:10]])


def header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=clip(text, 150), emoji=True))


def context(*lines: str) -> ContextBlock:
    return ContextBlock(elements=[md(clip(line, SECTION_LIMIT)) for line in lines[:10]])


def button(text: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=text, emoji=True), action_id=action_id, value=value, style=style
    )


def actions(block_id: str, *elements: ButtonElement) -> ActionsBlock:
    return ActionsBlock(block_id=block_id, elements=list(elements))


# --- time ----------------------------------------------------------------------------------------


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Slack shows the moment in each reader's own time zone; the fallback is UTC."""
    utc = moment.astimezone(UTC)
    fallback = utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(utc.timestamp())}^{fmt}|{fallback}>"


def wall(moment: datetime, zone: ZoneInfo) -> str:
    """`Mon 06 Jan 2025 02:00 CET` in `zone`."""
    local = moment.astimezone(zone)
    return local.strftime("%a %d %b %Y %H:%M ") + (local.strftime("%Z") or zone.key)


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
) -> list[Block]:
    """The schedule preview people see before anything is stored or approved."""
    other = user_zone is not None and user_zone.key != zone.key
    title = f"*Next {len(runs)} runs* ({escape(zone.key)}"
    title += f"; your time zone is {escape(user_zone.key)})" if other and user_zone else ")"
    blocks: list[Block] = [
        section(f"*Schedule (cron)* {code(expression)}\n{escape(description)}"),
        section(title + "\n" + "\n".join(run_lines(runs, zone, user_zone))),
    ]
    if warnings:
        blocks.append(section("\n".join(f":warning: {escape(w)}" for w in warnings[:10])))
    return blocks
