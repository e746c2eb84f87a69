"""Block Kit built as plain dicts is exactly what `slack_sdk.models` would write.

`bot.slack.blocks`, `messages`, `views` and `home` build Slack's JSON directly (it is cheaper on the
acknowledgement path). `slack_sdk.models` is the oracle here: the expected values are built with
its typed objects and `to_dict()`, as the bot did before, and compared for equality. A second
check sends whole messages and views through slack_sdk's parser and back: what it would drop
(an unknown or misspelt key, a None or empty value) or refuse (a limit) fails the test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    ConversationFilter,
    ConversationSelectElement,
    DividerBlock,
    ExternalDataSelectElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
    TimePickerElement,
)
from slack_sdk.models.blocks.basic_components import DispatchActionConfig
from slack_sdk.models.views import View

from bot.core.requests import Approval, BackupRequest, Draft, State
from bot.core.schedule import Preview, preview
from bot.core.schedule_builder import WEEK
from bot.cse import Engine
from bot.slack import blocks, home, messages, views
from bot.slack.engines import EngineChoice, EngineSource
from bot.slack.escape import code, escape
from bot.slack.form import FormInput, ScheduleMode, schedule_outcome
from bot.slack.ids import Action, Callback
from bot.slack.ids import Block as BlockId

NOW = datetime(2025, 1, 6, 9, 30, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
SINGAPORE = ZoneInfo("Asia/Singapore")
ENGINE_ID = "6f3c1e2a-0b1d-4c5e-9f00-123456789abc"


def make_request(**changes: Any) -> BackupRequest:
    fields: dict[str, Any] = {
        "id": "bkp-7k3m9q",
        "requester": "U0ALICE01",
        "channel": "C0BACKUPS",
        "engine_id": ENGINE_ID,
        "engine_name": "prod <search>",
        "schedule": "0 2 * * *",
        "timezone": "Europe/Paris",
        "reason": "INC-42 & more",
        "created_at": NOW - timedelta(minutes=3),
        "expires_at": NOW + timedelta(hours=4),
        "updated_at": NOW,
    }
    fields.update(changes)
    return BackupRequest(**fields)


def make_draft(**changes: Any) -> Draft:
    fields: dict[str, Any] = {
        "id": "drf-23456789ab",
        "user": "U0ALICE01",
        "channel": "C0BACKUPS",
        "engine_id": ENGINE_ID,
        "engine_name": "prod-search",
        "schedule": "30 1 * * 1-5",
        "reserve": 30,
        "max_files": None,
        "reason": "",
        "created_at": NOW,
    }
    fields.update(changes)
    return Draft(**fields)


def warned_preview() -> Preview:
    result = preview("30 1 * * 1-5", zone=PARIS, after=NOW, reserve=30, max_files=50)
    assert result.warnings  # the case covers the warnings section
    return result


# --- the oracle: the same blocks through slack_sdk.models ----------------------------------------


def o_plain(text: str) -> PlainTextObject:
    return PlainTextObject(text=blocks.clip(text, 75), emoji=True)


def o_section(text: str, block_id: str | None = None) -> SectionBlock:
    return SectionBlock(
        block_id=block_id, text=MarkdownTextObject(text=blocks.clip(text, blocks.SECTION_LIMIT))
    )


def o_fields(fields: list[str]) -> SectionBlock:
    return SectionBlock(
        fields=[MarkdownTextObject(text=blocks.clip(f, blocks.FIELD_LIMIT)) for f in fields[:10]]
    )


def o_header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=blocks.clip(text, 150), emoji=True))


def o_context(*lines: str) -> ContextBlock:
    return ContextBlock(
        elements=[MarkdownTextObject(text=blocks.clip(t, blocks.SECTION_LIMIT)) for t in lines]
    )


def o_button(text: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=text, emoji=True), action_id=action_id, value=value, style=style
    )


def o_preview(result: Preview, user_zone: ZoneInfo | None) -> list[Block]:
    """The schedule preview, written out again from its blocks (not from the bot's helpers)."""
    zone = ZoneInfo(result.timezone)
    other = user_zone is not None and user_zone.key != zone.key
    title = f"*Next {len(result.runs)} runs* ({escape(zone.key)}"
    title += f"; your time zone is {escape(user_zone.key)})" if other and user_zone else ")"
    out: list[Block] = [
        o_section(f"*Schedule (cron)* {code(result.expression)}\n{escape(result.description)}"),
        o_section(title + "\n" + "\n".join(blocks.run_lines(result.runs, zone, user_zone))),
    ]
    if result.warnings:
        out.append(o_section("\n".join(f":warning: {escape(w)}" for w in result.warnings[:10])))
    return out


def dumped(items: list[Block]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]


# --- the helpers ---------------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "x" * 2999, "x" * 3000, "x" * 3001, "y" * 2001, "z" * 151]
)


@given(text=texts)
def test_text_objects_and_simple_blocks_match_slack_sdk(text: str) -> None:
    assert blocks.md(text) == MarkdownTextObject(text=blocks.clip(text, 3000)).to_dict()
    assert blocks.plain(text) == PlainTextObject(text=text, emoji=True).to_dict()
    assert blocks.plain(text, emoji=False) == PlainTextObject(text=text).to_dict()
    assert blocks.section(text) == o_section(text).to_dict()
    assert blocks.header(text) == o_header(text).to_dict()
    assert blocks.context(text, "second") == o_context(text, "second").to_dict()


@given(fields=st.lists(texts, min_size=1, max_size=12))
def test_fields_sections_match_slack_sdk(fields: list[str]) -> None:
    assert blocks.fields_section(fields) == o_fields(fields).to_dict()


@pytest.mark.parametrize("style", [None, "primary", "danger"])
def test_buttons_actions_and_dividers_match_slack_sdk(style: str | None) -> None:
    built = blocks.actions(
        BlockId.ACTIONS,
        blocks.button("Approve", Action.APPROVE, "bkp-7k3m9q", style),
        blocks.button("Cancel", Action.CANCEL_REQUEST, "bkp-7k3m9q"),
    )
    expected = ActionsBlock(
        block_id=BlockId.ACTIONS,
        elements=[
            o_button("Approve", Action.APPROVE, "bkp-7k3m9q", style),
            o_button("Cancel", Action.CANCEL_REQUEST, "bkp-7k3m9q"),
        ],
    ).to_dict()
    assert built == expected
    assert ("style" in built["elements"][0]) is (style is not None)
    assert blocks.divider() == DividerBlock().to_dict()


# --- messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_zone", [None, PARIS, SINGAPORE])
def test_the_preview_message_matches_slack_sdk(user_zone: ZoneInfo | None) -> None:
    result = warned_preview()
    message = messages.preview_message(result, user_zone)
    expected = [
        *o_preview(result, user_zone),
        o_context("A preview only: nothing was stored or sent to CSE."),
    ]
    assert message.blocks == dumped(expected)


def test_the_quick_path_confirmation_matches_slack_sdk() -> None:
    draft, result = make_draft(), warned_preview()
    message = messages.confirmation_message(draft, result, SINGAPORE)
    expected = [
        o_section("*Check the backup policy before asking for approval*"),
        o_fields(messages.draft_fields(draft)),
        *o_preview(result, SINGAPORE),
        ActionsBlock(
            block_id=BlockId.ACTIONS,
            elements=[
                o_button("Request approval", Action.REQUEST_APPROVAL, draft.id, "primary"),
                o_button("Edit", Action.EDIT_DRAFT, draft.id),
                o_button("Cancel", Action.DISCARD_DRAFT, draft.id),
            ],
        ),
    ]
    assert message.blocks == dumped(expected)
    assert message.text == f"Backup policy for prod-search: {result.expression}"


def test_a_status_reply_with_history_matches_slack_sdk() -> None:
    request = make_request(
        state=State.FAILED,
        approvals=(Approval(user="U0BOB0002", at=NOW),),
        error={"error_code": "CSS.0001", "error_msg": "no", "hint": "Check it."},
    )
    history = [messages.HistoryLine(at=NOW, actor="U0BOB0002", before="pending", after="failed")]
    reply = messages.status_reply(request, history)
    kinds = [block["type"] for block in reply.blocks]
    assert kinds == ["header", "section", "section", "section", "section", "divider", "section"]
    assert reply.blocks[0] == o_header(f"Backup policy request {request.id}").to_dict()
    assert reply.blocks[5] == DividerBlock().to_dict()


# --- views ---------------------------------------------------------------------------------------


def test_the_confirm_view_matches_slack_sdk() -> None:
    draft, result = make_draft(), warned_preview()
    view = views.confirm_view(draft, result, None, built=True)
    expected = View(
        type="modal",
        callback_id=Callback.CONFIRM,
        title=o_plain(views.TITLE),
        submit=o_plain("Request approval"),
        close=o_plain("Cancel"),
        private_metadata=f'{{"draft":"{draft.id}"}}',
        blocks=[
            o_section("*Check the backup policy before asking for approval*"),
            o_fields(messages.draft_fields(draft)),
            o_section(
                f"Days and time make the cron expression `{result.expression}`; "
                "that is what CSE receives."
            ),
            *o_preview(result, None),
            ActionsBlock(
                block_id=BlockId.ACTIONS, elements=[o_button("Edit", Action.EDIT_DRAFT, draft.id)]
            ),
            o_context("Request approval posts the request in the channel for a second engineer."),
        ],
    ).to_dict()
    assert view == expected


def o_option(text: str, value: str) -> Option:
    return Option(text=o_plain(text), value=value)


def o_text_input(
    block: BlockId,
    label: str,
    *,
    optional: bool,
    placeholder: str,
    initial: str | None = None,
    hint: str | None = None,
    multiline: bool = False,
    max_length: int | None = None,
) -> InputBlock:
    return InputBlock(
        block_id=block,
        label=o_plain(label),
        optional=optional,
        element=PlainTextInputElement(
            action_id=Action(block.value),
            placeholder=o_plain(placeholder),
            initial_value=initial,
            multiline=multiline,
            max_length=max_length,
        ),
        hint=PlainTextObject(text=hint) if hint else None,
    )


def test_the_form_with_every_kind_of_input_matches_slack_sdk() -> None:
    """No channel (the shortcut, one picked), engines from CSE's list with one chosen, the
    schedule builder with days and a time, every text prefilled, a reason required."""
    given_input = FormInput(
        engine=ENGINE_ID,
        schedule="",
        reserve="7",
        max_files="5",
        reason="INC <42>",
        schedule_mode=ScheduleMode.DAYS,
        schedule_days=("1", "3", "0"),
        schedule_time="01:30",
    )
    outcome = schedule_outcome(given_input, zone=PARIS, now=NOW)
    assert outcome.preview is not None and outcome.built
    engine = EngineChoice(id=ENGINE_ID, name="prod-search (elasticsearch, AVAILABLE)")
    view = views.form_view(
        channel=None,
        source=EngineSource.LISTED,
        configured={},
        zone=PARIS,
        given=given_input,
        engine=engine,
        require_reason=True,
        outcome=outcome,
        picked_channel="C0PICKED1",
    )
    days = [o_option(name, str(number)) for number, name in WEEK]
    modes = [o_option(views.MODE_TEXT[m], m.value) for m in ScheduleMode]
    # The preview's wording is not what this test is about: its shape is.
    preview_text = views.schedule_preview_block(outcome)["text"]["text"]
    expected = View(
        type="modal",
        callback_id=Callback.FORM,
        title=o_plain(views.TITLE),
        submit=o_plain("Preview"),
        close=o_plain("Cancel"),
        private_metadata="{}",
        blocks=[
            InputBlock(
                block_id=BlockId.CHANNEL,
                label=o_plain("Channel for the approval message"),
                element=ConversationSelectElement(
                    action_id=Action.CHANNEL,
                    default_to_current_conversation=False,
                    initial_conversation="C0PICKED1",
                    filter=ConversationFilter(
                        include=["public", "private"], exclude_bot_users=True
                    ),
                ),
                hint=o_plain("Where a second engineer approves it; I must be a member."),
            ),
            InputBlock(
                block_id=BlockId.ENGINE,
                label=o_plain("Engine"),
                element=ExternalDataSelectElement(
                    action_id=Action.ENGINE,
                    placeholder=o_plain("Type to search the project's engines"),
                    min_query_length=0,
                    initial_option=o_option(engine.name, ENGINE_ID),
                ),
                hint=o_plain("Engines of the project, as CSE lists them."),
            ),
            InputBlock(
                block_id=BlockId.SCHEDULE,
                label=o_plain("Schedule (cron)"),
                optional=True,
                dispatch_action=True,
                element=PlainTextInputElement(
                    action_id=Action.SCHEDULE,
                    placeholder=o_plain("0 2 * * *"),
                    max_length=200,
                    dispatch_action_config=DispatchActionConfig(
                        trigger_actions_on=["on_enter_pressed", "on_character_entered"]
                    ),
                ),
                hint=PlainTextObject(
                    text=(
                        "Five fields: minute hour day-of-month month day-of-week, read in "
                        "Europe/Paris. `0 2 * * *` is 02:00 every day; `30 1 * * 1-5` is 01:30 "
                        "on weekdays. Or choose Days and time below."
                    )
                ),
            ),
            InputBlock(
                block_id=BlockId.SCHEDULE_MODE,
                label=o_plain("Schedule type"),
                dispatch_action=True,
                element=RadioButtonsElement(
                    action_id=Action.SCHEDULE_MODE, options=modes, initial_option=modes[1]
                ),
            ),
            InputBlock(
                block_id=BlockId.SCHEDULE_DAYS,
                label=o_plain("Days of the week"),
                optional=True,
                dispatch_action=True,
                element=CheckboxesElement(
                    action_id=Action.SCHEDULE_DAYS,
                    options=days,
                    initial_options=[days[0], days[2], days[6]],
                ),
                hint=o_plain("For Days and time, as in the CSE console."),
            ),
            InputBlock(
                block_id=BlockId.SCHEDULE_TIME,
                label=o_plain("Time"),
                optional=True,
                dispatch_action=True,
                element=TimePickerElement(
                    action_id=Action.SCHEDULE_TIME,
                    initial_time="01:30",
                    placeholder=o_plain("Time of day"),
                ),
                hint=o_plain("For Days and time: the time of day in Europe/Paris."),
            ),
            o_section(preview_text, block_id=BlockId.SCHEDULE_PREVIEW),
            o_text_input(
                BlockId.RESERVE,
                "Retention days",
                optional=True,
                placeholder="7",
                initial="7",
                hint="Days CSE keeps each backup. The CSE user guide says at most 10.",
                max_length=6,
            ),
            o_text_input(
                BlockId.MAX_FILES,
                "Max files",
                optional=True,
                placeholder="5",
                initial="5",
                hint="Backups kept at most. The CSE user guide says an engine keeps at most 5.",
                max_length=6,
            ),
            o_text_input(
                BlockId.REASON,
                "Reason",
                optional=False,
                placeholder="INC-42, change ticket, why now",
                initial="INC <42>",
                multiline=True,
                max_length=500,
            ),
        ],
    ).to_dict()
    assert view == expected
    assert preview_text.startswith("*Days and time make* `30 1 * * 0,1,3`")


@pytest.mark.parametrize(
    ("initial", "raw"),
    [(None, None), (EngineChoice(id="e-2", name="staging"), None), (None, "typed-id")],
)
def test_the_configured_and_typed_engine_inputs_match_slack_sdk(
    initial: EngineChoice | None, raw: str | None
) -> None:
    configured = {"prod-search": "e-1", "staging": "e-2", "n" * 90: "e-3"}
    options = [o_option(name, engine_id) for name, engine_id in configured.items()]
    chosen = next((o for o in options if initial and o.value == initial.id), None)
    form = views.form_view(
        channel="C0BACKUPS",
        source=EngineSource.CONFIGURED,
        configured=configured,
        zone=PARIS,
        given=FormInput(engine=raw),
        engine=initial,
    )
    assert form["blocks"][0] == (
        InputBlock(
            block_id=BlockId.ENGINE,
            label=o_plain("Engine"),
            element=StaticSelectElement(
                action_id=Action.ENGINE,
                placeholder=o_plain("Choose an engine"),
                options=options,
                initial_option=chosen,
            ),
        ).to_dict()
    )
    typed = views.form_view(
        channel="C0BACKUPS",
        source=EngineSource.TYPED,
        configured={},
        zone=PARIS,
        given=FormInput(engine=raw),
        engine=initial,
    )
    assert typed["blocks"][0] == (
        InputBlock(
            block_id=BlockId.ENGINE,
            label=o_plain("Engine"),
            element=PlainTextInputElement(
                action_id=Action.ENGINE,
                placeholder=o_plain("Engine id, as the CSE console shows it"),
                initial_value=(initial.id if initial else raw) or None,
                max_length=128,
            ),
            hint=o_plain("The engine id from the CSE console."),
        ).to_dict()
    )


@pytest.mark.parametrize(
    "engine",
    [
        Engine(id="e-1", name="prod", type="elasticsearch", status="AVAILABLE"),
        Engine(id="e-3", name="n" * 80, type="opensearch", status="FROZEN"),
        EngineChoice(id="e-9", name="nine"),
    ],
)
def test_engine_options_match_slack_sdk_and_still_have_to_dict(
    engine: Engine | EngineChoice,
) -> None:
    option = views.engine_option(engine)
    text = option["text"]["text"]
    assert len(text) <= 75
    assert option == o_option(text, engine.id).to_dict()
    assert option.to_dict() == option  # the options listener calls it


def test_the_reason_and_notice_views_match_slack_sdk() -> None:
    request = make_request()
    view = views.reason_view(
        request,
        callback=Callback.REJECT,
        title="Reject request",
        submit="Reject",
        intro="Reject it?",
        required=False,
    )
    assert (
        view
        == View(
            type="modal",
            callback_id=Callback.REJECT,
            title=o_plain("Reject request"),
            submit=o_plain("Reject"),
            close=o_plain("Back"),
            private_metadata=f'{{"request":"{request.id}"}}',
            blocks=[
                o_section("Reject it?"),
                o_section(messages.outcome_line(request)),
                InputBlock(
                    block_id=BlockId.DECISION_REASON,
                    label=o_plain("Reason (optional)"),
                    optional=True,
                    element=PlainTextInputElement(
                        action_id=Action.REASON,
                        multiline=True,
                        max_length=500,
                        placeholder=o_plain("Why"),
                    ),
                ),
            ],
        ).to_dict()
    )
    notice = views.notice_view("A title longer than Slack allows", "z" * 3100)
    assert (
        notice
        == View(
            type="modal",
            callback_id=Callback.NOTICE,
            title=o_plain("A title longer than Slack allows"[:24]),
            close=o_plain("Close"),
            blocks=[o_section("z" * 3100)],
        ).to_dict()
    )


def test_the_home_tab_matches_slack_sdk() -> None:
    waiting = [make_request(id="bkp-aaaaaa", required_approvals=2)]
    pending = make_request(id="bkp-bbbbbb")
    done = make_request(id="bkp-cccccc", state=State.REJECTED, decided_by="U0BOB0002")
    view = home.home_view(waiting, [pending, done], [], notice=":white_check_mark: Done.")
    mine = []
    for request in (pending, done):
        block = o_section(messages.request_line(request))
        if request.state is State.PENDING:
            block.accessory = o_button("Cancel", Action.CANCEL_REQUEST, request.id)
        mine.append(block)
    expected = View(
        type="home",
        blocks=[
            o_section(":white_check_mark: Done."),
            DividerBlock(),
            o_header("Waiting for your approval"),
            o_section(home._waiting_text(waiting[0])),
            ActionsBlock(
                block_id="home-bkp-aaaaaa",
                elements=[
                    o_button("Approve", Action.APPROVE, "bkp-aaaaaa", "primary"),
                    o_button("Reject", Action.REJECT, "bkp-aaaaaa", "danger"),
                ],
            ),
            DividerBlock(),
            o_header("Your requests"),
            *mine,
            DividerBlock(),
            o_header("Recently created policies"),
            o_section("_No policy created yet._"),
            o_context("`/cse-backup help` lists every command."),
        ],
    ).to_dict()
    assert view == expected


# --- every builder: slack_sdk would write back exactly what we send ------------------------------


def all_outputs() -> list[tuple[str, dict[str, Any]]]:
    approved = (Approval(user="U0BOB0002", at=NOW),)
    requests = [
        make_request(),
        make_request(required_approvals=2, approvals=approved, reserve=7, max_files=5),
        make_request(state=State.CREATED, approvals=approved, policy={"id": "p-1"}),
        make_request(
            state=State.FAILED,
            approvals=approved,
            error={"status": 400, "error_code": "X", "error_msg": "no", "hint": "Do this."},
        ),
        make_request(state=State.UNKNOWN, approvals=approved, error={"error_msg": "timeout"}),
        make_request(state=State.REJECTED, decided_by="U0BOB0002", decision_reason="no"),
        make_request(state=State.CANCELLED),
        make_request(state=State.EXPIRED),
    ]
    audience = messages.Audience(approvers=("U0BOB0002",))
    out: list[tuple[str, dict[str, Any]]] = []
    for r in requests:
        result = messages.result_message(r)
        out += [
            ("approval", messages.approval_message(r, audience=audience, now=NOW).payload()),
            ("status", messages.status_message(r).payload()),
            ("status_reply", messages.status_reply(r, []).payload()),
            ("reminder", messages.reminder_message(r, audience).payload()),
            ("break_glass", messages.break_glass_message(r, "U0ALICE01", "down").payload()),
        ]
        if result is not None:
            out.append(("result", result.payload()))
    out.append(("list", messages.list_message(requests[:2], requests[2:]).payload()))
    out.append(("problems", messages.problems_message("No:", ["a", "b"]).payload()))
    draft, result = make_draft(), warned_preview()
    out.append(("confirmation", messages.confirmation_message(draft, result, None).payload()))
    out.append(("confirm_view", views.confirm_view(draft, result, SINGAPORE)))
    for source in EngineSource:
        for given_input in (None, FormInput(engine="e-1", schedule="0 2 * * *", reserve="7")):
            outcome = schedule_outcome(given_input or FormInput(), zone=PARIS, now=NOW)
            out.append(
                (
                    f"form/{source}",
                    views.form_view(
                        channel=None,
                        source=source,
                        configured={"prod": "e-1"},
                        zone=PARIS,
                        given=given_input,
                        outcome=outcome,
                    ),
                )
            )
    out.append(("home", home.home_view(requests[:1], requests, requests[2:3], notice="hi")))
    return out


def test_every_builder_survives_a_round_trip_through_slack_sdk() -> None:
    for name, output in all_outputs():
        if output.get("type") in {"modal", "home"}:
            assert View(**output).to_dict() == output, name
        else:
            for block in output["blocks"]:
                parsed = Block.parse(block)
                assert parsed is not None, name
                assert parsed.to_dict() == block, name


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2400, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns", "Etc/GMT+5"]),
)
def test_wall_times_read_as_strftime_in_the_c_locale_writes_them(
    moment: datetime, key: str
) -> None:
    zone = ZoneInfo(key)
    local = moment.astimezone(zone)
    expected = local.strftime("%a %d %b %Y %H:%M ") + (local.strftime("%Z") or key)
    assert blocks.wall(moment, zone) == expected
