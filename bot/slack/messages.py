"""Every message the bot posts, each built by one function from the stored request.

The same builder serves the first post, every update and the final state, so a message always
shows what the store holds. User-typed text (reason, engine names typed by hand) is escaped;
CSE's error texts are escaped too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.approval import mention
from bot.core.requests import BackupRequest, Draft, State
from bot.core.schedule import Preview, describe, lint, next_runs, parse_schedule
from bot.slack.blocks import (
    Json,
    Message,
    actions,
    button,
    context,
    divider,
    fields_section,
    header,
    preview_blocks,
    run_lines,
    section,
    slack_date,
)
from bot.slack.escape import code, escape
from bot.slack.ids import Action
from bot.slack.ids import Block as BlockId

# A CSE nextAt within this of the first run the bot computed counts as the same moment.
NEXT_AT_TOLERANCE = 90.0


@dataclass(frozen=True)
class Audience:
    """Who may approve, as the messages say it (`APPROVERS`, `REQUIRED_APPROVALS`)."""

    approvers: tuple[str, ...] = ()

    def who(self) -> str:
        if not self.approvers:
            return "anyone but the requester"
        return ", ".join(mention(p) for p in self.approvers)


def _engine(request: BackupRequest | Draft) -> str:
    if request.engine_name and request.engine_name != request.engine_id:
        return f"{escape(request.engine_name)} ({code(request.engine_id)})"
    return code(request.engine_id)


def _optional_number(value: int | None, unit: str = "") -> str:
    return f"{value}{unit}" if value is not None else "not set (CSE default)"


def _reason(text: str | None) -> str:
    return escape(text) if text else "_none given_"


def _approved_by(request: BackupRequest) -> str:
    names = []
    for approval in request.approvals:
        text = mention(approval.user)
        if approval.break_glass_reason:
            text += f" (break glass: {escape(approval.break_glass_reason)})"
        names.append(text)
    return ", ".join(names) or (mention(request.decided_by) if request.decided_by else "?")


def _policy_id(request: BackupRequest) -> str:
    return str((request.policy or {}).get("id", "?"))


def _hint(request: BackupRequest) -> str:
    """What to do about a failed call: the flow's own advice (our text, not CSE's)."""
    hint = (request.error or {}).get("hint")
    return hint if isinstance(hint, str) else ""


def error_fields(error: dict[str, Any] | None) -> tuple[str, str, str, str]:
    """(status, error_code, error_msg, detail) as stored, each text possibly empty."""
    error = error or {}
    status = error.get("status")
    return (
        str(status) if status is not None else "",
        str(error.get("error_code") or ""),
        str(error.get("error_msg") or ""),
        str(error.get("detail") or ""),
    )


UNRECORDED = (
    ":warning: This outcome could not be recorded yet: the request store (Redis) is not "
    "answering. The bot keeps trying; until then `/cse-backup status` may still show the "
    "request as approved. Do not approve it again."
)


def unrecorded(request: BackupRequest) -> bool:
    """CSE answered but the store could not record it yet (the flow marks what it shows)."""
    return bool((request.policy or {}).get("unrecorded") or (request.error or {}).get("unrecorded"))


def outcome_line(request: BackupRequest) -> str:
    """One line saying where the request stands, for the approval and status messages."""
    line = _outcome(request)
    return f"{line}\n{UNRECORDED}" if unrecorded(request) else line


def _outcome(request: BackupRequest) -> str:
    match request.state:
        case State.PENDING:
            line = (
                f":hourglass_flowing_sand: Waiting for approval: {len(request.approvals)} of "
                f"{request.required_approvals} approval{'s' * (request.required_approvals != 1)}"
            )
            if request.approvals:
                line += f": {_approved_by(request)}"
            return line + f". Expires {slack_date(request.expires_at)}."
        case State.APPROVED:
            return f":gear: Approved by {_approved_by(request)}; creating the policy in CSE…"
        case State.CREATED:
            return (
                f":white_check_mark: Approved by {_approved_by(request)}. "
                f"Backup policy {code(_policy_id(request))} created."
            )
        case State.FAILED:
            _, error_code, error_msg, _ = error_fields(request.error)
            return (
                f":x: Approved by {_approved_by(request)}, but CSE did not create the policy: "
                f"{code(error_code or 'error')} {escape(error_msg)}"
            )
        case State.UNKNOWN:
            return (
                f":warning: Approved by {_approved_by(request)}, but the outcome is unknown: "
                "check the CSE console before trying again."
            )
        case State.REJECTED:
            by = mention(request.decided_by) if request.decided_by else "an approver"
            why = f": {escape(request.decision_reason)}" if request.decision_reason else "."
            return f":no_entry: Rejected by {by}{why}"
        case State.CANCELLED:
            by = mention(request.decided_by or request.requester)
            why = f": {escape(request.decision_reason)}" if request.decision_reason else "."
            return f":wastebasket: Cancelled by {by}{why}"
        case State.EXPIRED:
            return (
                f":alarm_clock: Expired {slack_date(request.expires_at)} without enough "
                "approvals; nothing was sent to CSE."
            )
    return f"State: {request.state}"  # pragma: no cover


def _detail_fields(request: BackupRequest) -> list[str]:
    return [
        f"*Requested by*\n{mention(request.requester)}",
        f"*Engine*\n{_engine(request)}",
        f"*Retention days*\n{_optional_number(request.reserve)}",
        f"*Max files*\n{_optional_number(request.max_files)}",
        f"*Reason*\n{_reason(request.reason)}",
    ]


def approval_message(request: BackupRequest, *, audience: Audience, now: datetime) -> Message:
    """The message approvers act on; buttons only while it is pending."""
    zone = ZoneInfo(request.timezone)
    schedule = parse_schedule(request.schedule)
    description = describe(schedule)
    blocks: list[Json] = [
        header(f"CSE backup policy request {request.id}"),
        section(
            f"{mention(request.requester)} asks for a backup policy on engine {_engine(request)}.",
        ),
        fields_section(_detail_fields(request)),
        section(f"*Schedule (cron)* {code(schedule.expression)}\n{escape(description)}"),
    ]
    if request.state is State.PENDING:
        runs = next_runs(schedule, now, 5, zone)
        blocks.append(
            section(
                f"*Next {len(runs)} runs* ({escape(zone.key)})\n"
                + "\n".join(run_lines(runs, zone, None))
            )
        )
        # Approvers see the same warnings the requester saw before asking.
        warnings = lint(schedule, zone, now, request.reserve, request.max_files)
        if warnings:
            blocks.append(section("\n".join(f":warning: {escape(w)}" for w in warnings[:10])))
    blocks.append(section(outcome_line(request)))
    if request.state is State.PENDING:
        blocks.append(
            context(
                f"Approvers: {audience.who()}. "
                f"Needs {request.required_approvals} approval"
                f"{'s' * (request.required_approvals != 1)}; the requester never counts."
            )
        )
        blocks.append(
            actions(
                BlockId.ACTIONS,
                button("Approve", Action.APPROVE, request.id, "primary"),
                button("Reject", Action.REJECT, request.id, "danger"),
                button("Cancel", Action.CANCEL_REQUEST, request.id),
            )
        )
    text = (
        f"Backup policy request {request.id} from {mention(request.requester)} "
        f"for engine {escape(request.engine_name)}: {request.state.value}"
    )
    return Message(text=text, blocks=blocks)


def status_message(request: BackupRequest) -> Message:
    """The short message kept up to date in the requester's channel (APPROVAL_CHANNEL set)."""
    where = f" in {mention(request.message_channel)}" if request.message_channel else ""
    blocks: list[Json] = [
        section(
            f"{mention(request.requester)} asked for backup policy {code(request.id)} on engine "
            f"{_engine(request)}, schedule {code(request.schedule)}; approval happens{where}."
        ),
        section(outcome_line(request)),
    ]
    text = f"Backup policy request {request.id}: {request.state.value}"
    return Message(text=text, blocks=blocks)


def _moment(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def created_message(request: BackupRequest) -> Message:
    """The created policy, as CSE returned it, with the nextAt cross-check."""
    policy = request.policy or {}
    schedule = parse_schedule(request.schedule)
    created_at = _moment(policy.get("created_at"))
    next_at = _moment(policy.get("next_at"))
    expected = _moment(policy.get("expected_next_at"))
    reserve = policy.get("reserve", request.reserve)
    max_files = policy.get("max_files", request.max_files)
    fields = [
        f"*Policy id*\n{code(_policy_id(request))}",
        f"*Engine*\n{_engine(request)}",
        f"*Schedule (cron)*\n{code(str(policy.get('schedule') or request.schedule))}\n"
        f"{escape(describe(schedule))} ({escape(request.timezone)})",
        f"*Retention days*\n{_optional_number(reserve if isinstance(reserve, int) else None)}",
        f"*Max files*\n{_optional_number(max_files if isinstance(max_files, int) else None)}",
        f"*Created at*\n{slack_date(created_at) if created_at else 'not given by CSE'}",
        f"*Next backup*\n{slack_date(next_at) if next_at else 'not given by CSE'}",
        f"*Request*\n{code(request.id)}, approved by {_approved_by(request)}",
    ]
    blocks: list[Json] = [
        header("CSE backup policy created"),
        fields_section(fields),
    ]
    if next_at and expected and abs((next_at - expected).total_seconds()) > NEXT_AT_TOLERANCE:
        blocks.append(
            section(
                f":warning: CSE says the next backup is {slack_date(next_at)}, but the bot "
                f"expected {slack_date(expected)} reading the schedule in "
                f"{escape(request.timezone)}. The engine may read cron in another time zone: "
                "check `CSE_SCHEDULE_TIMEZONE`."
            )
        )
    text = f"Backup policy {_policy_id(request)} created on engine {escape(request.engine_name)}"
    return Message(text=text, blocks=blocks)


def failed_message(request: BackupRequest) -> Message:
    status, error_code, error_msg, detail = error_fields(request.error)
    fields = [
        f"*error_code*\n{code(error_code or '-')}",
        f"*HTTP status*\n{status or '-'}",
        f"*error_msg*\n{escape(error_msg) or '-'}",
        f"*detail*\n{escape(detail) or '-'}",
    ]
    blocks: list[Json] = [
        header("CSE backup policy not created"),
        section(
            f"CSE did not create the backup policy of request {code(request.id)} "
            f"(engine {_engine(request)}, schedule {code(request.schedule)})."
        ),
        fields_section(fields),
    ]
    hint = _hint(request)
    if hint:
        blocks.append(section(f"*What to do* {hint}"))
    blocks.append(
        actions(
            BlockId.ACTIONS,
            button("Edit and resubmit", Action.EDIT_AND_RESUBMIT, request.id, "primary"),
        )
    )
    text = (
        f"CSE did not create backup policy request {request.id}: "
        f"{escape(error_code)} {escape(error_msg)}"
    )
    return Message(text=text, blocks=blocks)


def unknown_message(request: BackupRequest) -> Message:
    _, error_code, error_msg, detail = error_fields(request.error)
    blocks: list[Json] = [
        header("CSE backup policy: outcome unknown"),
        section(
            f":warning: The create call for request {code(request.id)} (engine "
            f"{_engine(request)}, schedule {code(request.schedule)}) may have reached CSE, "
            "but no usable answer came back. *Check the CSE console* (the engine's backup "
            "policies) before trying again: the bot does not retry, to never create it twice."
        ),
    ]
    if error_msg:
        extra = f" {escape(detail)}" if detail else ""
        blocks.append(context(f"{code(error_code or 'NO_ANSWER')} {escape(error_msg)}{extra}"))
    text = f"Backup policy request {request.id}: outcome unknown, check the CSE console"
    return Message(text=text, blocks=blocks)


def result_message(request: BackupRequest) -> Message | None:
    """The message posted once the CSE call has an outcome (None before that)."""
    match request.state:
        case State.CREATED:
            message = created_message(request)
        case State.FAILED:
            message = failed_message(request)
        case State.UNKNOWN:
            message = unknown_message(request)
        case _:
            return None
    if unrecorded(request):
        return Message(text=message.text, blocks=[*message.blocks, section(UNRECORDED)])
    return message


def break_glass_message(request: BackupRequest, user: str, reason: str) -> Message:
    text = (
        f":rotating_light: *Break glass*: {mention(user)} approved their own backup policy "
        f"request {code(request.id)} (engine {_engine(request)}, schedule "
        f"{code(request.schedule)}). Reason: {escape(reason)}"
    )
    return Message(
        text=f"Break glass: {mention(user)} approved their own request {request.id}",
        blocks=[section(text)],
    )


def reminder_message(request: BackupRequest, audience: Audience) -> Message:
    text = (
        f":bell: {audience.who()}: backup policy request {code(request.id)} from "
        f"{mention(request.requester)} is still waiting for approval; it expires "
        f"{slack_date(request.expires_at)}."
    )
    return Message(text=text, blocks=[section(text)])


# --- the quick path and the ephemeral answers ----------------------------------------------------


def draft_fields(draft: Draft) -> list[str]:
    return [
        f"*Engine*\n{_engine(draft)}",
        f"*Retention days*\n{_optional_number(draft.reserve)}",
        f"*Max files*\n{_optional_number(draft.max_files)}",
        f"*Reason*\n{_reason(draft.reason)}",
    ]


def confirmation_message(draft: Draft, result: Preview, user_zone: ZoneInfo | None) -> Message:
    """The quick path's ephemeral confirmation: the preview and three buttons."""
    zone = ZoneInfo(result.timezone)
    blocks: list[Json] = [
        section("*Check the backup policy before asking for approval*"),
        fields_section(draft_fields(draft)),
        *preview_blocks(
            expression=result.expression,
            description=result.description,
            zone=zone,
            runs=result.runs,
            warnings=result.warnings,
            user_zone=user_zone,
        ),
        actions(
            BlockId.ACTIONS,
            button("Request approval", Action.REQUEST_APPROVAL, draft.id, "primary"),
            button("Edit", Action.EDIT_DRAFT, draft.id),
            button("Cancel", Action.DISCARD_DRAFT, draft.id),
        ),
    ]
    return Message(
        text=f"Backup policy for {escape(draft.engine_name)}: {result.expression}",
        blocks=blocks,
    )


def preview_message(result: Preview, user_zone: ZoneInfo | None) -> Message:
    blocks = preview_blocks(
        expression=result.expression,
        description=result.description,
        zone=ZoneInfo(result.timezone),
        runs=result.runs,
        warnings=result.warnings,
        user_zone=user_zone,
    )
    blocks.append(context("A preview only: nothing was stored or sent to CSE."))
    return Message(text=f"{result.expression}: {result.description}", blocks=blocks)


def problems_message(title: str, problems: list[str]) -> Message:
    """A list of what is wrong, each item already plain text from our code (escaped here)."""
    lines = "\n".join(f"• {escape(p)}" for p in problems)
    text = f"{title}\n{lines}"
    return Message(text=text, blocks=[section(text)])


def text_message(text: str) -> Message:
    return Message(text=text, blocks=[section(text)])


def request_line(request: BackupRequest) -> str:
    return (
        f"{code(request.id)} *{request.state.value}* · {_engine(request)} · "
        f"{code(request.schedule)} · by {mention(request.requester)} · "
        f"{slack_date(request.created_at)}"
    )


def list_message(pending: list[BackupRequest], recent: list[BackupRequest]) -> Message:
    blocks: list[Json] = []
    if not pending and not recent:
        return text_message("No backup policy requests in this channel yet.")
    if pending:
        blocks.append(
            section("*Waiting for approval*\n" + "\n".join(request_line(r) for r in pending[:20]))
        )
    if recent:
        blocks.append(section("*Recent*\n" + "\n".join(request_line(r) for r in recent[:20])))
    blocks.append(context("`/cse-backup status &lt;id&gt;` shows one request and its history."))
    text = f"{len(pending)} waiting for approval, {len(recent)} recent"
    return Message(text=text, blocks=blocks)


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    actor: str
    before: str
    after: str
    note: str = ""


def status_reply(request: BackupRequest, history: list[HistoryLine]) -> Message:
    fields = _detail_fields(request)
    fields.insert(0, f"*State*\n{request.state.value}")
    blocks: list[Json] = [
        header(f"Backup policy request {request.id}"),
        fields_section(fields[:10]),
        section(f"*Schedule (cron)* {code(request.schedule)} ({escape(request.timezone)})"),
        section(outcome_line(request)),
    ]
    if request.policy:
        blocks.append(section(f"*Policy id* {code(_policy_id(request))}"))
    if request.error:
        _, error_code, error_msg, detail = error_fields(request.error)
        blocks.append(
            section(
                f"*CSE error* {code(error_code or '-')} {escape(error_msg)}"
                + (f"\n{escape(detail)}" if detail else "")
                + (f"\n*What to do* {_hint(request)}" if _hint(request) else "")
            )
        )
    if history:
        blocks.append(divider())
        lines = []
        for item in history[-20:]:
            actor = mention(item.actor) if item.actor[:1] in {"U", "W"} else escape(item.actor)
            change = f"{item.before or '–'} → {item.after}"
            note = f" ({escape(item.note)})" if item.note else ""
            lines.append(f"• {slack_date(item.at)} {actor}: {change}{note}")
        blocks.append(section("*History*\n" + "\n".join(lines)))
    return Message(text=f"Backup policy request {request.id}: {request.state.value}", blocks=blocks)
