"""The modals: the request form, its confirmation, the reject and break-glass reason forms.

`private_metadata` carries one small typed value (`ViewMeta`), never the state: the form knows the
channel it was opened from, the confirmation a draft id, the reason forms a request id.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError
from slack_sdk.models.blocks import (
    Block,
    ConversationFilter,
    ConversationSelectElement,
    ExternalDataSelectElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.core.requests import BackupRequest, Draft
from bot.core.schedule import Preview
from bot.cse import Engine
from bot.slack.blocks import (
    actions,
    button,
    clip,
    context,
    fields_section,
    preview_blocks,
    section,
)
from bot.slack.engines import EngineChoice, EngineSource
from bot.slack.form import LABELS, Field, FormInput
from bot.slack.ids import Action, Callback
from bot.slack.ids import Block as BlockId
from bot.slack.messages import draft_fields, outcome_line

TITLE = "CSE backup policy"


class ViewMeta(BaseModel):
    """What a view remembers between Slack round trips: ids only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str | None = None
    draft: str | None = None
    request: str | None = None

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def load(cls, text: str | None) -> ViewMeta:
        try:
            return cls.model_validate_json(text or "{}")
        except ValidationError:
            return cls()


def _plain(text: str) -> PlainTextObject:
    return PlainTextObject(text=clip(text, 75), emoji=True)


def engine_option(engine: Engine | EngineChoice) -> Option:
    if isinstance(engine, Engine):
        extra = ", ".join(p for p in (engine.type, engine.status) if p)
        text = f"{engine.name or engine.id}" + (f" ({extra})" if extra else "")
    else:
        text = engine.name
    return Option(text=_plain(text), value=engine.id)


def _engine_input(
    source: EngineSource, configured: dict[str, str], initial: EngineChoice | None, raw: str | None
) -> InputBlock:
    element: Any
    if source is EngineSource.CONFIGURED:
        options = [
            Option(text=_plain(name), value=engine_id) for name, engine_id in configured.items()
        ]
        selected = next((o for o in options if initial and o.value == initial.id), None)
        element = StaticSelectElement(
            action_id=Action.ENGINE,
            placeholder=_plain("Choose an engine"),
            options=options[:100],
            initial_option=selected,
        )
        hint = None
    elif source is EngineSource.LISTED:
        element = ExternalDataSelectElement(
            action_id=Action.ENGINE,
            placeholder=_plain("Type to search the project's engines"),
            min_query_length=0,
            initial_option=engine_option(initial) if initial else None,
        )
        hint = "Engines of the project, as CSE lists them."
    else:
        element = PlainTextInputElement(
            action_id=Action.ENGINE,
            placeholder=_plain("Engine id, as the CSE console shows it"),
            initial_value=(initial.id if initial else raw) or None,
            max_length=128,
        )
        hint = "The engine id from the CSE console."
    return InputBlock(
        block_id=BlockId.ENGINE,
        label=_plain(LABELS[Field.ENGINE]),
        element=element,
        hint=_plain(hint) if hint else None,
    )


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
) -> InputBlock:
    return InputBlock(
        block_id=BlockId(field.value),
        label=_plain(label or LABELS[field]),
        optional=optional,
        element=PlainTextInputElement(
            action_id=Action(field.value),
            placeholder=_plain(placeholder),
            initial_value=initial or None,
            multiline=multiline,
            max_length=max_length,
        ),
        hint=PlainTextObject(text=clip(hint, 2000)) if hint else None,
    )


def _channel_input() -> InputBlock:
    return InputBlock(
        block_id=BlockId.CHANNEL,
        label=_plain("Channel for the approval message"),
        element=ConversationSelectElement(
            action_id=Action.CHANNEL,
            default_to_current_conversation=True,
            filter=ConversationFilter(include=["public", "private"], exclude_bot_users=True),
        ),
        hint=_plain("Where a second engineer approves it; I must be a member."),
    )


def form_view(
    *,
    channel: str | None,
    source: EngineSource,
    configured: dict[str, str],
    zone: ZoneInfo,
    given: FormInput | None = None,
    engine: EngineChoice | None = None,
    require_reason: bool = False,
) -> dict[str, Any]:
    """The request form, optionally prefilled (quick path with some values, Edit, resubmit)."""
    given = given or FormInput()
    blocks: list[Block] = [] if channel else [_channel_input()]
    blocks += [
        _engine_input(source, configured, engine, given.engine),
        _text_input(
            Field.SCHEDULE,
            initial=given.schedule,
            optional=False,
            placeholder="0 2 * * *",
            hint=(
                f"Five fields: minute hour day-of-month month day-of-week, read in {zone.key}. "
                "`0 2 * * *` is 02:00 every day; `30 1 * * 1-5` is 01:30 on weekdays."
            ),
            max_length=200,
        ),
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
    view = View(
        type="modal",
        callback_id=Callback.FORM,
        title=_plain(TITLE),
        submit=_plain("Preview"),
        close=_plain("Cancel"),
        private_metadata=ViewMeta(channel=channel).dump(),
        blocks=blocks,
    )
    return dict(view.to_dict())


def confirm_view(draft: Draft, result: Preview, user_zone: ZoneInfo | None) -> dict[str, Any]:
    """The form's second step: the preview, then Request approval."""
    blocks: list[Block] = [
        section("*Check the backup policy before asking for approval*"),
        fields_section(draft_fields(draft)),
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
    view = View(
        type="modal",
        callback_id=Callback.CONFIRM,
        title=_plain(TITLE),
        submit=_plain("Request approval"),
        close=_plain("Cancel"),
        private_metadata=ViewMeta(draft=draft.id).dump(),
        blocks=blocks,
    )
    return dict(view.to_dict())


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
    blocks: list[Block] = [
        section(intro),
        section(outcome_line(request)),
        InputBlock(
            block_id=BlockId.DECISION_REASON,
            label=_plain("Reason" if required else "Reason (optional)"),
            optional=not required,
            element=PlainTextInputElement(
                action_id=Action.REASON,
                multiline=True,
                max_length=500,
                placeholder=_plain("Why"),
            ),
        ),
    ]
    view = View(
        type="modal",
        callback_id=callback,
        title=_plain(title),
        submit=_plain(submit),
        close=_plain("Back"),
        private_metadata=ViewMeta(request=request.id).dump(),
        blocks=blocks,
    )
    return dict(view.to_dict())


def notice_view(title: str, text: str) -> dict[str, Any]:
    """A view that only says something (an error after submit, say), with a Close button."""
    view = View(
        type="modal",
        callback_id=Callback.NOTICE,
        title=_plain(title[:24]),
        close=_plain("Close"),
        blocks=[section(text)],
    )
    return dict(view.to_dict())


def submitted_values(view: dict[str, Any]) -> dict[str, str | None]:
    """The view's input values by block id, whatever the element type (text, select, number)."""
    out: dict[str, str | None] = {}
    state = (view.get("state") or {}).get("values") or {}
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
