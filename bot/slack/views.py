"""The modals: the request form, its confirmation, the reject and break-glass reason forms.

`private_metadata` carries one small typed value (`ViewMeta`), never the state: the form knows the
channel it was opened from, the confirmation a draft id, the reason forms a request id.

Views and their inputs are plain dicts shaped as `slack_sdk.models` would write them (see
`bot.slack.blocks`): an attribute that is None or empty is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.requests import BackupRequest, Draft
from bot.core.schedule import Preview
from bot.core.schedule_builder import WEEK
from bot.cse import Engine
from bot.slack.blocks import (
    Json,
    actions,
    button,
    clip,
    context,
    fields_section,
    md,
    plain,
    preview_blocks,
    run_lines,
    section,
)
from bot.slack.engines import EngineChoice, EngineSource, usable
from bot.slack.escape import code, escape
from bot.slack.form import LABELS, Field, FormInput, ScheduleMode, ScheduleOutcome
from bot.slack.ids import Action, Callback
from bot.slack.ids import Block as BlockId
from bot.slack.messages import draft_fields, outcome_line

TITLE = "CSE backup policy"
OPTION_LIMIT = 75  # an option's text, and the labels and placeholders here
HINT_LIMIT = 2000


# Slack keeps at most 3000 characters of a view's private_metadata.
METADATA_LIMIT = 3000


class ViewMeta(BaseModel):
    """What a view remembers between Slack round trips: ids, and the form's draft itself on the
    confirmation step (`form`; Slack gives it back with the submission, signed, so the form
    needs no store write before the confirmation nor a read after it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str | None = None
    draft: str | None = None
    request: str | None = None
    form: Draft | None = None

    def fits(self) -> bool:
        return len(self.dump()) <= METADATA_LIMIT

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def load(cls, text: str | None) -> ViewMeta:
        try:
            return cls.model_validate_json(text or "{}")
        except ValidationError:
            return cls()


class OptionJson(dict[str, Any]):
    """An option object, a plain dict; `to_dict()` is kept for callers written for
    `slack_sdk.models.blocks.Option` (the engine picker's options listener)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


def _plain(text: str) -> Json:
    return plain(clip(text, OPTION_LIMIT))


def _option(text: str, value: str) -> Json:
    return {"text": _plain(text), "value": value}


def _modal(
    callback_id: str,
    title: str,
    blocks: list[Json],
    *,
    close: str,
    submit: str | None = None,
    private_metadata: str | None = None,
) -> Json:
    view: Json = {"type": "modal", "callback_id": callback_id, "title": _plain(title)}
    if submit is not None:
        view["submit"] = _plain(submit)
    view["close"] = _plain(close)
    if private_metadata:
        view["private_metadata"] = private_metadata
    view["blocks"] = blocks
    return view


def engine_option(engine: Engine | EngineChoice) -> OptionJson:
    """An engine as the picker shows it: name (type, status), and a word when it cannot take a
    backup policy (shown, so nobody wonders where it went; refused on submit, with the reason)."""
    if isinstance(engine, Engine):
        extra = ", ".join(p for p in (engine.type, engine.status) if p)
        text = f"{engine.name or engine.id}" + (f" ({extra})" if extra else "")
        if not usable(engine):
            marker = " - not available"
            text = clip(text, OPTION_LIMIT - len(marker)) + marker
    else:
        text = engine.name
    return OptionJson(text=_plain(text), value=engine.id)


def _engine_input(
    source: EngineSource, configured: dict[str, str], initial: EngineChoice | None, raw: str | None
) -> Json:
    element: Json
    if source is EngineSource.CONFIGURED:
        options = [_option(name, engine_id) for name, engine_id in configured.items()]
        selected = next((o for o in options if initial and o["value"] == initial.id), None)
        element = {
            "type": "static_select",
            "action_id": Action.ENGINE,
            "placeholder": _plain("Choose an engine"),
        }
        if options:
            element["options"] = options[:100]
        if selected is not None:
            element["initial_option"] = selected
        hint = None
    elif source is EngineSource.LISTED:
        element = {
            "type": "external_select",
            "action_id": Action.ENGINE,
            "placeholder": _plain("Type to search the project's engines"),
            "min_query_length": 0,
        }
        if initial:
            element["initial_option"] = engine_option(initial)
        hint = "Engines of the project, as CSE lists them."
    else:
        element = {
            "type": "plain_text_input",
            "action_id": Action.ENGINE,
            "placeholder": _plain("Engine id, as the CSE console shows it"),
            "max_length": 128,
        }
        initial_value = initial.id if initial else raw
        if initial_value:
            element["initial_value"] = initial_value
        hint = "The engine id from the CSE console."
    block: Json = {
        "type": "input",
        "block_id": BlockId.ENGINE,
        "label": _plain(LABELS[Field.ENGINE]),
        "element": element,
    }
    if hint:
        block["hint"] = _plain(hint)
    return block


def _text_input(
    field: Field,
    *,
    initial: str | None,
    optional: bool,
    placeholder: str,
    hint: str | None = None,
    multiline: bool = False,
    max_length: int | None = None,
    label: str | None = None,
) -> Json:
    element: Json = {
        "type": "plain_text_input",
        "action_id": Action(field.value),
        "placeholder": _plain(placeholder),
        "multiline": multiline,
    }
    if initial:
        element["initial_value"] = initial
    if max_length is not None:
        element["max_length"] = max_length
    block: Json = {
        "type": "input",
        "block_id": BlockId(field.value),
        "label": _plain(label or LABELS[field]),
        "optional": optional,
        "element": element,
    }
    if hint:
        block["hint"] = plain(clip(hint, HINT_LIMIT), emoji=False)
    return block


def _channel_input(initial: str | None = None) -> Json:
    element: Json = {
        "type": "conversations_select",
        "action_id": Action.CHANNEL,
        "default_to_current_conversation": initial is None,
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if initial:
        element["initial_conversation"] = initial
    return {
        "type": "input",
        "block_id": BlockId.CHANNEL,
        "label": _plain("Channel for the approval message"),
        "element": element,
        "hint": _plain("Where a second engineer approves it; I must be a member."),
    }


MODE_TEXT = {ScheduleMode.CRON: "Cron expression", ScheduleMode.DAYS: "Days and time"}
DEFAULT_TIME = "02:00"


def _mode_option(mode: ScheduleMode) -> Json:
    return _option(MODE_TEXT[mode], mode.value)


def _day_option(number: int, name: str) -> Json:
    return _option(name, str(number))


def _schedule_inputs(given: FormInput, zone: ZoneInfo) -> list[Json]:
    """The cron input, then the schedule type and the builder beside it (days and a time).

    The cron input comes first and is there from the start, so typing a cron needs nothing
    else (the default type is Cron expression). It is optional for Slack's client, because
    with Days and time it may stay empty; the server asks for it when it is what counts.
    Every input dispatches its changes, which update the live preview below them.
    """
    cron_element: Json = {
        "type": "plain_text_input",
        "action_id": Action.SCHEDULE,
        "placeholder": _plain("0 2 * * *"),
        "max_length": 200,
        "dispatch_action_config": {
            "trigger_actions_on": ["on_enter_pressed", "on_character_entered"]
        },
    }
    if given.schedule:
        cron_element["initial_value"] = given.schedule
    cron: Json = {
        "type": "input",
        "block_id": BlockId.SCHEDULE,
        "label": _plain(LABELS[Field.SCHEDULE]),
        "optional": True,
        "dispatch_action": True,
        "element": cron_element,
        "hint": plain(
            f"Five fields: minute hour day-of-month month day-of-week, read in {zone.key}. "
            "`0 2 * * *` is 02:00 every day; `30 1 * * 1-5` is 01:30 on weekdays. "
            "Or choose Days and time below.",
            emoji=False,
        ),
    }
    mode: Json = {
        "type": "input",
        "block_id": BlockId.SCHEDULE_MODE,
        "label": _plain("Schedule type"),
        "dispatch_action": True,
        "element": {
            "type": "radio_buttons",
            "action_id": Action.SCHEDULE_MODE,
            "options": [_mode_option(m) for m in ScheduleMode],
            "initial_option": _mode_option(given.schedule_mode),
        },
    }
    options = [_day_option(number, name) for number, name in WEEK]
    ticked = set(given.schedule_days or ())
    days_element: Json = {
        "type": "checkboxes",
        "action_id": Action.SCHEDULE_DAYS,
        "options": options,
    }
    initial_days = [o for o in options if o["value"] in ticked]
    if initial_days:
        days_element["initial_options"] = initial_days
    days: Json = {
        "type": "input",
        "block_id": BlockId.SCHEDULE_DAYS,
        "label": _plain(LABELS[Field.SCHEDULE_DAYS]),
        "optional": True,
        "dispatch_action": True,
        "element": days_element,
        "hint": _plain("For Days and time, as in the CSE console."),
    }
    time: Json = {
        "type": "input",
        "block_id": BlockId.SCHEDULE_TIME,
        "label": _plain(LABELS[Field.SCHEDULE_TIME]),
        "optional": True,
        "dispatch_action": True,
        "element": {
            "type": "timepicker",
            "action_id": Action.SCHEDULE_TIME,
            "placeholder": _plain("Time of day"),
            "initial_time": given.schedule_time or DEFAULT_TIME,
        },
        "hint": _plain(f"For Days and time: the time of day in {zone.key}."),
    }
    return [cron, mode, days, time]


def schedule_preview_block(outcome: ScheduleOutcome | None) -> Json:
    """The live preview under the schedule inputs: what the schedule means and when it runs,
    or why it is not valid. The expression is always shown, so a person can tell which text
    (or which builder choice) the preview describes."""
    if outcome is None or (outcome.blank and outcome.preview is None):
        text = (
            "_Type a cron expression, or choose Days and time, to see what it means and when "
            "it runs._"
        )
    elif outcome.preview is None:
        problems = "\n".join(f":x: {escape(e)}" for e in outcome.errors.values())
        source = "Days and time" if outcome.built else "The cron expression"
        text = f"*{source} is not usable yet*\n{problems}"
    else:
        result = outcome.preview
        zone = ZoneInfo(result.timezone)
        made = "Days and time make" if outcome.built else "Schedule (cron)"
        lines = [
            f"*{made}* {code(result.expression)}: {escape(result.description)}",
            f"*Next {len(result.runs)} runs* ({escape(zone.key)})",
            *run_lines(result.runs, zone, None),
            *(f":warning: {escape(w)}" for w in result.warnings[:5]),
        ]
        text = "\n".join(lines)
    return {"type": "section", "block_id": BlockId.SCHEDULE_PREVIEW, "text": md(text)}


def form_view(
    *,
    channel: str | None,
    source: EngineSource,
    configured: dict[str, str],
    zone: ZoneInfo,
    given: FormInput | None = None,
    engine: EngineChoice | None = None,
    require_reason: bool = False,
    outcome: ScheduleOutcome | None = None,
    picked_channel: str | None = None,
) -> dict[str, Any]:
    """The request form, optionally prefilled (quick path with some values, Edit, resubmit,
    and each live-preview update, which rebuilds it from what is in it now). `outcome` is the
    schedule preview shown under the schedule inputs; `picked_channel` the channel already
    chosen in a form opened without one (the shortcut)."""
    given = given or FormInput()
    blocks: list[Json] = [] if channel else [_channel_input(picked_channel)]
    blocks += [
        _engine_input(source, configured, engine, given.engine),
        *_schedule_inputs(given, zone),
        schedule_preview_block(outcome),
        _text_input(
            Field.RESERVE,
            initial=given.reserve,
            optional=True,
            placeholder="7",
            hint="Days CSE keeps each backup. The CSE user guide says at most 10.",
            max_length=6,
        ),
        _text_input(
            Field.MAX_FILES,
            initial=given.max_files,
            optional=True,
            placeholder="5",
            hint="Backups kept at most. The CSE user guide says an engine keeps at most 5.",
            max_length=6,
        ),
        _text_input(
            Field.REASON,
            initial=given.reason,
            optional=not require_reason,
            label="Reason" if require_reason else "Reason (optional)",
            placeholder="INC-42, change ticket, why now",
            multiline=True,
            max_length=500,
        ),
    ]
    return _modal(
        Callback.FORM,
        TITLE,
        blocks,
        submit="Preview",
        close="Cancel",
        private_metadata=ViewMeta(channel=channel).dump(),
    )


def confirm_view(
    draft: Draft,
    result: Preview,
    user_zone: ZoneInfo | None,
    *,
    built: bool = False,
    meta: ViewMeta | None = None,
) -> dict[str, Any]:
    """The form's second step: the preview, then Request approval. `built`: the schedule
    builder made the expression, so say which one it made. `meta`: what the view carries (by
    default the draft's id, the draft being in the store)."""
    blocks: list[Json] = [
        section("*Check the backup policy before asking for approval*"),
        fields_section(draft_fields(draft)),
    ]
    if built:
        blocks.append(
            section(
                f"Days and time make the cron expression {code(result.expression)}; "
                "that is what CSE receives."
            )
        )
    blocks += [
        *preview_blocks(
            expression=result.expression,
            description=result.description,
            zone=ZoneInfo(result.timezone),
            runs=result.runs,
            warnings=result.warnings,
            user_zone=user_zone,
        ),
        actions(BlockId.ACTIONS, button("Edit", Action.EDIT_DRAFT, draft.id)),
        context("Request approval posts the request in the channel for a second engineer."),
    ]
    return _modal(
        Callback.CONFIRM,
        TITLE,
        blocks,
        submit="Request approval",
        close="Cancel",
        private_metadata=(meta or ViewMeta(draft=draft.id)).dump(),
    )


def reason_view(
    request: BackupRequest,
    *,
    callback: Callback,
    title: str,
    submit: str,
    intro: str,
    required: bool,
) -> dict[str, Any]:
    """A small form asking why: for Reject (optional unless REQUIRE_REASON) and break glass."""
    blocks: list[Json] = [
        section(intro),
        section(outcome_line(request)),
        {
            "type": "input",
            "block_id": BlockId.DECISION_REASON,
            "label": _plain("Reason" if required else "Reason (optional)"),
            "optional": not required,
            "element": {
                "type": "plain_text_input",
                "action_id": Action.REASON,
                "placeholder": _plain("Why"),
                "multiline": True,
                "max_length": 500,
            },
        },
    ]
    return _modal(
        callback,
        title,
        blocks,
        submit=submit,
        close="Back",
        private_metadata=ViewMeta(request=request.id).dump(),
    )


def notice_view(title: str, text: str) -> dict[str, Any]:
    """A view that only says something (an error after submit, say), with a Close button."""
    return _modal(Callback.NOTICE, title[:24], [section(text)], close="Close")


def _state_values(view: dict[str, Any]) -> dict[str, Any]:
    """`view.state.values`, or nothing when a client sent something else in its place."""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    return values if isinstance(values, dict) else {}


def submitted_values(view: dict[str, Any]) -> dict[str, str | None]:
    """The view's input values by block id, whatever the element type (text, select, number)."""
    out: dict[str, str | None] = {}
    state = _state_values(view)
    for block_id, elements in state.items():
        if not isinstance(elements, dict):
            continue
        for element in elements.values():
            if not isinstance(element, dict):
                continue
            selected = element.get("selected_option")
            if isinstance(selected, dict):
                out[block_id] = str(selected.get("value") or "") or None
            elif element.get("selected_conversation") or element.get("selected_channel"):
                out[block_id] = str(
                    element.get("selected_conversation") or element.get("selected_channel")
                )
            else:
                value = element.get("value")
                out[block_id] = str(value) if value is not None else None
            break
    return out


@dataclass(frozen=True)
class FormState:
    """What the request form holds now, read from a view's `state.values` (on submit, and on
    each change that updates the live preview)."""

    given: FormInput
    engine: EngineChoice | None = None  # the picked option, kept shown when the form is rebuilt
    channel: str | None = None  # the channel picked in a form opened without one


def _text(element: dict[str, Any], key: str) -> str | None:
    value = element.get(key)
    return str(value) if value is not None else None


def form_state(view: dict[str, Any]) -> FormState:
    """The request form's values, whatever each input's element type."""
    state = _state_values(view)

    def element(block: BlockId) -> dict[str, Any]:
        found = state.get(block.value)
        if isinstance(found, dict):
            for item in found.values():
                if isinstance(item, dict):
                    return item
        return {}

    engine_element = element(BlockId.ENGINE)
    engine_text = _text(engine_element, "value")
    engine: EngineChoice | None = None
    picked = engine_element.get("selected_option")
    if isinstance(picked, dict) and picked.get("value"):
        engine_text = str(picked["value"])
        shown = (
            (picked.get("text") or {}).get("text") if isinstance(picked.get("text"), dict) else ""
        )
        engine = EngineChoice(id=engine_text, name=str(shown or engine_text))

    mode_option = element(BlockId.SCHEDULE_MODE).get("selected_option")
    mode_value = mode_option.get("value") if isinstance(mode_option, dict) else None
    mode = (
        ScheduleMode(mode_value)
        if isinstance(mode_value, str) and mode_value in set(ScheduleMode)
        else ScheduleMode.CRON
    )
    days_element = element(BlockId.SCHEDULE_DAYS)
    ticked = days_element.get("selected_options")
    days = (
        tuple(str(o.get("value")) for o in ticked if isinstance(o, dict) and o.get("value"))
        if isinstance(ticked, list)
        else None
    )
    channel_element = element(BlockId.CHANNEL)
    channel = channel_element.get("selected_conversation") or channel_element.get(
        "selected_channel"
    )
    given = FormInput(
        engine=engine_text,
        schedule=_text(element(BlockId.SCHEDULE), "value"),
        reserve=_text(element(BlockId.RESERVE), "value"),
        max_files=_text(element(BlockId.MAX_FILES), "value"),
        reason=_text(element(BlockId.REASON), "value"),
        schedule_mode=mode,
        schedule_days=days,
        schedule_time=_text(element(BlockId.SCHEDULE_TIME), "selected_time"),
    )
    return FormState(given=given, engine=engine, channel=str(channel) if channel else None)
