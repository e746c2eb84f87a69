"""`/cse-backup` and its sub-commands (CONTRACT §4).

`help` and `preview` are answered in the acknowledgement itself (Slack shows the ack body as the
same ephemeral message; no second request is needed), unless that takes longer than
`ACK_BUDGET`, when the answer goes through the `response_url`. The sub-commands that use the
store (`create`, `list`, `status`, `cancel`) are acknowledged empty at once and answered by the
lazy part, in the follow-up worker when there is one (bot.slack.followups): through the
`response_url`, or by opening the form.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.approval import decide_create
from bot.core.requests import State, normalise_request_id
from bot.core.schedule import ScheduleError, preview
from bot.slack.blocks import Message
from bot.slack.command_text import Command, parse_quick_args, split_command
from bot.slack.engines import EngineChoice, EngineRefused
from bot.slack.errors import UserError, guarded, handle_error
from bot.slack.followups import hand_off, later, only_if_handed
from bot.slack.form import LABELS, Field, FormInput, validate
from bot.slack.messages import (
    HistoryLine,
    confirmation_message,
    list_message,
    preview_message,
    problems_message,
    status_reply,
    text_message,
)
from bot.slack.reply import ephemeral
from bot.slack.services import Services

USAGE = """*`/cse-backup`*: Huawei CSE microservice backup policies, approved by a second engineer.
• `/cse-backup create`: open the form
• `/cse-backup create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason="INC-42"`: \
the quick path (any order; missing values open the form prefilled)
• `/cse-backup preview 0 2 * * *`: what a schedule means and when it runs next (nothing is stored)
• `/cse-backup list`: pending and recent requests of this channel
• `/cse-backup status bkp-7k3m9q`: one request and its history
• `/cse-backup cancel bkp-7k3m9q`: withdraw your pending request
• `/cse-backup help`: this text"""
_HELP = text_message(USAGE)  # the same every time: built once


# Slack waits 3 seconds for the ack: an answer not ready within this goes by response_url.
ACK_BUDGET = 1.5


class OpenForm:
    """The answer is the form (a modal): acknowledged empty, opened by the lazy part."""


OPEN_FORM = OpenForm()
Reply = Message | OpenForm | None
Verb = Callable[[Services, Command, dict[str, Any]], Awaitable[Reply]]


def register(app: AsyncApp, services: Services) -> None:
    @guarded
    async def on_command(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        command = split_command(str(body.get("text") or ""))
        if command.verb in _FROM_THE_STORE:
            # Its answer needs the store (and `create` may open the form): the lazy part gives
            # it, through the response_url, in the follow-up worker.
            hand_off(context, answer=True)
            await ack()
            return
        handler = _IN_THE_ACK.get(command.verb, _usage)
        work = asyncio.ensure_future(handler(services, command, body))
        done, _ = await asyncio.wait({work}, timeout=ACK_BUDGET)
        if not done:
            await ack()
            services.followups.track(_answer_later(services, work, body, client, context))
            return
        reply = work.result()  # a refusal raises here: the error handler answers in the ack
        if isinstance(reply, Message):
            await ack(response_type="ephemeral", **reply.payload())
        else:
            await ack()

    @only_if_handed("answer")
    async def answer(body: dict[str, Any], client: AsyncWebClient) -> None:
        command = split_command(str(body.get("text") or ""))
        reply = await _FROM_THE_STORE[command.verb](services, command, body)
        await _give(services, reply, body, client)

    # The command's name comes from the app manifest; every command sent to this app is ours.
    app.command(re.compile(r"^/.+"))(ack=on_command, lazy=[later(answer)])


async def _give(
    services: Services, reply: Reply, body: dict[str, Any], client: AsyncWebClient
) -> None:
    """An answer given after the ack: the form opened, or an ephemeral by the response_url."""
    if isinstance(reply, OpenForm):
        await _open_form(services, body, client)
    elif reply is not None:
        await ephemeral(body, client, reply)


async def _answer_later(
    services: Services,
    work: asyncio.Future[Reply],
    body: dict[str, Any],
    client: AsyncWebClient,
    context: AsyncBoltContext,
) -> None:
    """A sub-command slower than ACK_BUDGET: its answer (or refusal) through the response_url."""
    try:
        await _give(services, await work, body, client)
    except Exception as error:
        await handle_error(error, body, None, client, context)


async def _open_form(services: Services, body: dict[str, Any], client: AsyncWebClient) -> None:
    """The form for `/cse-backup create`, prefilled with the values the command gave."""
    args = parse_quick_args(split_command(str(body.get("text") or "")).rest)
    given = None if args.empty else _given(args.values)
    engine = await _engine_choice(services, given.engine) if given else None
    view = services.form(str(body["channel_id"]), given, engine)
    await client.views_open(trigger_id=body["trigger_id"], view=view)


def _given(values: dict[str, str]) -> FormInput:
    return FormInput(
        engine=values.get("engine"),
        schedule=values.get("schedule"),
        reserve=values.get("reserve"),
        max_files=values.get("max_files"),
        reason=values.get("reason"),
    )


async def _check_channel(services: Services, body: dict[str, Any]) -> None:
    allowed = services.settings.allowed_channels
    if allowed and body.get("channel_id") not in allowed:
        where = ", ".join(f"<#{c}>" for c in allowed)
        raise UserError(f"`/cse-backup` works only in {where}.")


async def _usage(
    services: Services,
    command: Command,
    body: dict[str, Any],
) -> Reply:
    del services, body
    prefix = ""
    if command.verb and command.verb != "help":
        shown = command.verb[:30].replace("`", "ˋ")
        prefix = f"I do not know `{_safe(shown)}`.\n"
    return text_message(prefix + USAGE) if prefix else _HELP


def _safe(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def _create(
    services: Services,
    command: Command,
    body: dict[str, Any],
) -> Reply:
    await _check_channel(services, body)
    user, channel = str(body["user_id"]), str(body["channel_id"])
    groups = await services.flow.groups_of(user)
    decision = decide_create(services.flow.policy, user, groups, channel)
    if not decision.allowed:
        raise UserError(decision.message)
    args = parse_quick_args(command.rest)
    if args.empty:
        return OPEN_FORM
    given = _given(args.values)
    now = services.clock()
    result = await validate(
        given,
        catalog=services.catalog,
        zone=services.settings.zone,
        now=now,
        require_reason=services.settings.require_reason,
    )
    missing_ok = {f for f in Field if getattr(given, f.value) is None}
    bad = {f: e for f, e in result.errors.items() if f not in missing_ok}
    if args.problems or bad:
        problems = list(args.problems) + [f"{LABELS[f]} ({f.value}): {e}" for f, e in bad.items()]
        return problems_message("*Nothing was stored or sent:*", problems)
    if result.values is None or not given.complete(
        require_reason=services.settings.require_reason
    ):  # some values missing: the form, prefilled with what was given
        return OPEN_FORM
    values = result.values
    draft = values.draft(user=user, channel=channel, now=now)
    await services.flow.save_draft(draft)
    zone = await services.directory.user_zone(user)
    return confirmation_message(draft, values.preview, zone)


async def _engine_choice(services: Services, text: str | None) -> EngineChoice | None:
    if not text:
        return None
    try:
        return await services.catalog.resolve(text)
    except EngineRefused:
        return None


async def _preview(
    services: Services,
    command: Command,
    body: dict[str, Any],
) -> Reply:
    await _check_channel(services, body)
    if not command.rest:
        raise UserError("Give a cron expression: `/cse-backup preview 0 2 * * *`.")
    try:
        result = preview(command.rest, zone=services.settings.zone, after=services.clock())
    except ScheduleError as exc:
        raise UserError(f"Not a schedule I accept: {_safe(str(exc))}") from None
    zone = await services.directory.user_zone(str(body["user_id"]))
    return preview_message(result, zone)


async def _list(
    services: Services,
    command: Command,
    body: dict[str, Any],
) -> Reply:
    del command
    await _check_channel(services, body)
    requests = await services.flow.store.list_channel(str(body["channel_id"]), limit=30)
    pending = [r for r in requests if r.state is State.PENDING]
    recent = [r for r in requests if r not in pending][:10]
    return list_message(pending, recent)


def _request_id(command: Command, verb: str) -> str:
    request_id = normalise_request_id(command.rest)
    if request_id is None:
        raise UserError(
            f"Give a request id, e.g. `/cse-backup {verb} bkp-7k3m9q` "
            "(`/cse-backup list` shows them)."
        )
    return request_id


async def _status(
    services: Services,
    command: Command,
    body: dict[str, Any],
) -> Reply:
    await _check_channel(services, body)
    request = await services.flow.get(_request_id(command, "status"))
    entries = await services.flow.store.audit(request.id)
    history = [
        HistoryLine(
            at=e.at,
            actor=e.actor,
            before=e.from_state.value if e.from_state else "",
            after=e.to_state.value,
            note=e.note,
        )
        for e in entries
    ]
    return status_reply(request, history)


async def _cancel(
    services: Services,
    command: Command,
    body: dict[str, Any],
) -> Reply:
    await _check_channel(services, body)
    request = await services.flow.cancel(_request_id(command, "cancel"), str(body["user_id"]))
    return text_message(f"Request `{request.id}` is cancelled; nothing was sent to CSE.")


# Answered in the acknowledgement: pure computation, ready in well under a millisecond.
_IN_THE_ACK: dict[str, Verb] = {"preview": _preview, "help": _usage}
# Answered after it, by the lazy part: they read or write the store.
_FROM_THE_STORE: dict[str, Verb] = {
    "create": _create,
    "new": _create,
    "list": _list,
    "status": _status,
    "cancel": _cancel,
}
