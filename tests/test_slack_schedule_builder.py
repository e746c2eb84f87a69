"""The modal's schedule: the cron input, the Days and time builder beside it, and the live
preview that follows every change (views.update with the view's hash), driven over signed HTTP."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.slack_api import text_of
from tests.fakes.slack_driver import state_values
from tests.slack_harness import ALICE, APPROVALS, BOB, CHANNEL, running

GOOD = {"Engine": "prod", "Retention days": "7", "Max files": "5"}
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]


def _input_block(view: dict[str, Any], label: str) -> dict[str, Any]:
    for block in view["blocks"]:
        if block.get("type") == "input" and label in text_of(block["label"]):
            found: dict[str, Any] = block
            return found
    raise AssertionError(f"no input labelled {label!r}")


def _preview(view: dict[str, Any]) -> str:
    block = next(b for b in view["blocks"] if b.get("block_id") == "schedule_preview")
    return text_of(block["text"])


async def test_the_form_opens_with_the_cron_input_and_the_builder_beside_it() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        labels = [text_of(b["label"]) for b in form["blocks"] if b.get("type") == "input"]
        cron = _input_block(form, "Schedule (cron)")
        assert cron["element"]["type"] == "plain_text_input"
        assert cron["dispatch_action"] is True
        triggers = cron["element"]["dispatch_action_config"]["trigger_actions_on"]
        assert set(triggers) == {"on_enter_pressed", "on_character_entered"}
        # The cron input is the first schedule input: a search by "Schedule" finds it first.
        assert labels.index("Schedule (cron)") < labels.index("Schedule type")
        mode = _input_block(form, "Schedule type")
        assert mode["element"]["type"] == "radio_buttons"
        assert mode["dispatch_action"] is True
        assert [text_of(o["text"]) for o in mode["element"]["options"]] == [
            "Cron expression",
            "Days and time",
        ]
        assert text_of(mode["element"]["initial_option"]["text"]) == "Cron expression"
        days = _input_block(form, "Days of the week")["element"]
        assert days["type"] == "checkboxes"
        assert [text_of(o["text"]) for o in days["options"]] == [*WEEKDAYS, "Sat", "Sun"]
        assert _input_block(form, "Time")["element"]["type"] == "timepicker"
        assert "Type a cron expression" in _preview(form)

        # The default type: typing a cron into its input is all it takes.
        response = await h.driver.submit_view(
            ALICE, form, {**GOOD, "Schedule (cron)": "30 1 * * 1-5"}
        )
        assert response.json()["response_action"] == "update"
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and confirm["callback_id"] == "backup_confirm"
        assert "30 1 * * 1-5" in json.dumps(confirm["blocks"])
        assert "Days and time make" not in json.dumps(confirm["blocks"])


async def test_days_and_time_build_the_expression_that_is_requested_and_sent() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)

        await h.driver.select(ALICE, "schedule_mode", "Days and time", view=form)
        form = await h.driver.wait_for_view(ALICE)
        mode = _input_block(form, "Schedule type")["element"]["initial_option"]
        assert text_of(mode["text"]) == "Days and time"
        assert "Tick at least one day" in _preview(form)

        await h.driver.select(ALICE, "schedule_days", WEEKDAYS, view=form)
        form = await h.driver.wait_for_view(ALICE)
        shown = _preview(form)
        assert "`0 2 * * 1-5`" in shown and "Monday through Friday" in shown
        assert "Next 5 runs" in shown

        await h.driver.select(ALICE, "schedule_time", "01:30", view=form)
        form = await h.driver.wait_for_view(ALICE)
        assert "`30 1 * * 1-5`" in _preview(form)
        assert "At 01:30" in _preview(form)

        # Every update carried the hash of the version the person acted on.
        updates = h.fake.calls_to("views.update")
        assert len(updates) == 3 and all(call.args.get("hash") for call in updates)

        response = await h.driver.submit_view(ALICE, form, GOOD)
        assert response.json()["response_action"] == "update"
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None
        shown = json.dumps(confirm["blocks"])
        assert "Days and time make the cron expression `30 1 * * 1-5`" in shown
        await h.driver.submit_view(ALICE, confirm)
        message = await h.driver.wait_for_message("Approve", channel=CHANNEL)
        await h.driver.click(BOB, "Approve", message=message)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        [sent] = h.cse.create_requests()
        assert sent.json["schedule"] == "30 1 * * 1-5"


async def test_the_builder_wins_when_chosen_and_a_typed_cron_when_not() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        values = {
            **GOOD,
            "Schedule (cron)": "0 3 * * *",
            "Days of the week": ["Sat", "Sun"],
            "Time": "23:05",
        }
        # Cron expression chosen (the default): the typed cron counts, the builder does not.
        await h.driver.submit_view(ALICE, form, values)
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and "`0 3 * * *`" in json.dumps(confirm["blocks"])
        await h.driver.click(ALICE, "Edit", view=confirm)
        form = await h.driver.wait_for_view(ALICE)

        await h.driver.submit_view(ALICE, form, {**values, "Schedule type": "Days and time"})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None
        shown = json.dumps(confirm["blocks"])
        assert "`5 23 * * 0,6`" in shown and "0 3 * * *" not in shown


async def test_builder_problems_come_back_on_its_fields() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        response = await h.driver.submit_view(
            ALICE, form, {**GOOD, "Schedule type": "Days and time", "Time": None}
        )
        body = response.json()
        assert body["response_action"] == "errors"
        assert set(body["errors"]) == {"schedule_days", "schedule_time"}
        # Nothing chosen at all: the cron input is what is missing.
        response = await h.driver.submit_view(ALICE, form, GOOD)
        assert set(response.json()["errors"]) == {"schedule"}


async def test_live_preview_of_a_typed_cron_and_of_a_bad_one() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        await h.driver.select(ALICE, "schedule", "0 2 * * *", view=form)
        form = await h.driver.wait_for_view(ALICE)
        shown = _preview(form)
        assert "`0 2 * * *`" in shown and "At 02:00" in shown
        assert shown.count("• ") == 5  # the next five runs
        # What was typed stays in the input.
        assert _input_block(form, "Schedule (cron)")["element"]["initial_value"] == "0 2 * * *"

        await h.driver.select(ALICE, "schedule", "0 0 30 2 *", view=form)
        form = await h.driver.wait_for_view(ALICE)
        assert "not usable yet" in _preview(form) and "February" in _preview(form)

        await h.driver.select(ALICE, "schedule", "<!channel> 2 * * *", view=form)
        form = await h.driver.wait_for_view(ALICE)
        assert "<" not in _preview(form) and "&lt;" in _preview(form)  # escaped, never a ping


async def test_a_stale_preview_never_overwrites_a_newer_form() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        stale = await h.driver.wait_for_view(ALICE)
        await h.driver.select(ALICE, "schedule", "0 3 * * *", view=stale)
        newer = await h.driver.wait_for_view(ALICE)
        assert "`0 3 * * *`" in _preview(newer)
        before = h.fake.mark()

        # A keystroke from the version before that update arrives late, with its old hash.
        action = {
            "type": "plain_text_input",
            "action_id": "schedule",
            "block_id": "schedule",
            "value": "0 4 * * *",
            "action_ts": "1700000000.000001",
        }
        state = state_values(stale["blocks"], {"schedule": "0 4 * * *"}, enforce=False)
        await h.driver._block_actions(ALICE, stale, action, state=state)
        await h.fake.async_wait_for("views.update", since=before)

        refused = h.fake.calls[before:]
        assert [c.method for c in refused] == ["views.update"]
        assert refused[0].response["error"] == "hash_conflict"
        current = h.driver.current_view(ALICE)
        assert current is not None and "`0 3 * * *`" in _preview(current)
        # Dropped silently: nobody is told about a preview that lost the race.
        await h.driver.app_home_opened(BOB)  # something else, to be sure the app carried on
        await h.fake.async_wait_for("views.publish", since=before)
        assert not [c for c in h.fake.calls[before:] if c.method.startswith("chat.")]


async def test_edit_shows_the_built_expression_in_the_cron_input() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        await h.driver.submit_view(
            ALICE,
            form,
            {**GOOD, "Schedule type": "Days and time", "Days of the week": ["Sun"]},
        )
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None
        await h.driver.click(ALICE, "Edit", view=confirm)
        again = await h.driver.wait_for_view(ALICE)
        assert _input_block(again, "Schedule (cron)")["element"]["initial_value"] == "0 2 * * 0"
        assert "`0 2 * * 0`" in _preview(again)
        days = _input_block(again, "Days of the week")["element"]["initial_options"]
        assert [text_of(o["text"]) for o in days] == ["Sun"]
        assert _input_block(again, "Time")["element"]["initial_time"] == "02:00"
        # Still the cron input's expression that counts, until the type is switched.
        mode = _input_block(again, "Schedule type")["element"]["initial_option"]
        assert text_of(mode["text"]) == "Cron expression"


async def test_a_late_preview_never_replaces_the_confirmation() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        await h.driver.submit_view(ALICE, form, {**GOOD, "Schedule (cron)": "0 2 * * *"})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and confirm["callback_id"] == "backup_confirm"
        before = h.fake.mark()

        # A keystroke sent just before the submit, answered after it.
        action = {
            "type": "plain_text_input",
            "action_id": "schedule",
            "block_id": "schedule",
            "value": "0 2 * * *",
            "action_ts": "1700000000.000002",
        }
        state = state_values(form["blocks"], {"schedule": "0 2 * * *"}, enforce=False)
        await h.driver._block_actions(ALICE, form, action, state=state)
        call = await h.fake.async_wait_for("views.update", since=before)
        assert call.response["error"] == "hash_conflict"
        now = h.driver.current_view(ALICE)
        assert now is not None and now["callback_id"] == "backup_confirm"


async def test_live_preview_in_the_shortcut_form_keeps_the_channel_picker() -> None:
    async with running() as h:
        await h.driver.shortcut(ALICE, "create_backup_policy")
        form = await h.driver.wait_for_view(ALICE)
        # Inputs that do not change the preview are acknowledged, nothing more.
        await h.driver.select(ALICE, "channel", APPROVALS, view=form)
        await h.driver.select(ALICE, "schedule_days", ["Sat"], view=form)
        form = await h.driver.wait_for_view(ALICE)
        assert "`0 2 * * 6`" in _preview(form)
        channel = next(b for b in form["blocks"] if b.get("block_id") == "channel")["element"]
        assert channel["type"] == "conversations_select"
        await h.driver.submit_view(ALICE, form, {**GOOD, "channel": APPROVALS})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and "`0 2 * * 6`" in json.dumps(confirm["blocks"])
        await h.driver.submit_view(ALICE, confirm)
        await h.driver.wait_for_message("Approve", channel=APPROVALS)


async def test_a_submission_older_than_the_preview_still_gets_its_confirmation() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        snapshot = await h.driver.wait_for_view(ALICE)
        await h.driver.select(ALICE, "schedule", "0 2 * * *", view=snapshot)
        await h.driver.wait_for_view(ALICE)  # the preview landed: the form has a new hash

        # The person's client submits the version it had before that preview arrived.
        values = {**GOOD, "Schedule (cron)": "0 2 * * *"}
        snapshot["state"] = {"values": state_values(snapshot["blocks"], values)}
        payload = {
            **h.driver._base("view_submission", ALICE),
            "trigger_id": h.fake.issue_trigger_id(ALICE),
            "view": snapshot,
            "response_urls": [],
        }
        response = await h.driver.send_interaction(payload)
        assert response.json()["response_action"] == "update"
        h.fake.apply_view_response(snapshot["id"], response.json(), snapshot["hash"])
        # The ack alone would lose to the newer preview; the bot put the confirmation there.
        current = h.driver.current_view(ALICE)
        assert current is not None and current["callback_id"] == "backup_confirm"
        await h.driver.submit_view(ALICE, current)
        await h.driver.wait_for_message("Approve", channel=CHANNEL)
