"""The App Home tab: what waits for the viewer's approval, and the viewer's own requests."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block, DividerBlock
from slack_sdk.models.views import View

from bot.core.requests import BackupRequest
from bot.slack.blocks import actions, button, context, header, section
from bot.slack.ids import Action
from bot.slack.messages import request_line

MAX_ITEMS = 10


def home_view(waiting: list[BackupRequest], mine: list[BackupRequest]) -> dict[str, Any]:
    blocks: list[Block] = [header("Waiting for your approval")]
    if not waiting:
        blocks.append(section("_Nothing waits for you._"))
    for request in waiting[:MAX_ITEMS]:
        blocks.append(section(request_line(request)))
        blocks.append(
            actions(
                f"home-{request.id}",
                button("Approve", Action.APPROVE, request.id, "primary"),
                button("Reject", Action.REJECT, request.id, "danger"),
            )
        )
    blocks += [DividerBlock(), header("Your requests")]
    if not mine:
        blocks.append(section("_None yet: `/cse-backup create` asks for a backup policy._"))
    else:
        blocks.append(section("\n".join(request_line(r) for r in mine[:MAX_ITEMS])))
    blocks.append(context("`/cse-backup help` lists every command."))
    return dict(View(type="home", blocks=blocks).to_dict())
