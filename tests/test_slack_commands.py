"""Every row of CONTRACT §4's `/cse-backup` table, driven over signed HTTP."""

from __future__ import annotations

import json

from bot.core.requests import State
from tests.fakes.slack_api import text_of
from tests.slack_harness import ALICE, BOB, CHANNEL, MALLORY, PROD_ID, running

QUICK = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason="INC-42"'


def _labels(view: dict[str, object]) -> list[str]:
    blocks = view["blocks"]
    assert isinstance(blocks, list)
    return [text_of(b["label"]) for b in blocks if b.get("type") == "input"]


def _input(view: dict[str, object], word: str) -> dict[str, object]:
    blocks = view["blocks"]
    assert isinstance(blocks, list)
    for block in blocks:
        if block.get("type") == "input" and word in text_of(block["label"]):
            element: dict[str, object] = block["element"]
            return element
    raise AssertionError(f"no input labelled {word!r}")


def _buttons(blocks: list[dict[str, object]]) -> list[str]:
    found = []
    for block in blocks:
        if block.get("type") == "actions":
            elements = block["elements"]
            assert isinstance(elements, list)
            found += [text_of(e["text"]) for e in elements if e.get("type") == "button"]
    return found


async def test_create_opens_the_modal() -> None:
    async with running() as h:
        response = await h.driver.command(ALICE, CHANNEL, "create")
        assert response.status_code == 200
        view = await h.driver.wait_for_view(ALICE)
        assert view["title"]["text"] == "CSE backup policy"
        labels = _labels(view)
        for word in ("Engine", "Schedule (cron)", "Retention days", "Max files", "Reason"):
            assert any(word in label for label in labels), labels
        assert "Reason (optional)" in labels
        engine = _input(view, "Engine")
        assert engine["type"] == "static_select"
        options = engine["options"]
        assert isinstance(options, list)
        assert [text_of(o["text"]) for o in options] == ["prod", "staging"]
        assert _input(view, "Schedule")["type"] == "plain_text_input"


async def test_reason_is_mandatory_when_required() -> None:
    async with running(require_reason=True) as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        view = await h.driver.wait_for_view(ALICE)
        reason = next(b for b in view["blocks"] if b.get("block_id") == "reason")
        assert text_of(reason["label"]) == "Reason"
        assert not reason.get("optional", False)


async def test_quick_path_all_valid_shows_a_confirmation() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, QUICK)
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval")
        assert _buttons(confirmation.blocks) == ["Request approval", "Edit", "Cancel"]
        text = confirmation.all_text
        assert "0 2 * * *" in text and "02:00" in text
        assert "Europe/Berlin" in text  # Alice's Slack zone differs from the schedule's (UTC)
        assert await h.store.list_channel(CHANNEL) == []  # nothing requested yet
        assert h.cse.create_requests() == []

        await h.driver.click(ALICE, "Request approval", message=confirmation)
        approval = await h.driver.wait_for_message("Approve", channel=CHANNEL)
        assert {"Approve", "Reject", "Cancel"} <= set(_buttons(approval.blocks))
        assert "INC-42" in approval.all_text and "prod" in approval.all_text
        assert "<!date^" in json.dumps(approval.blocks)
        [request] = await h.store.list_channel(CHANNEL)
        assert request.state is State.PENDING
        assert (request.engine_id, request.schedule) == (PROD_ID, "0 2 * * *")
        assert (request.reserve, request.max_files, request.reason) == (7, 5, "INC-42")


async def test_quick_path_typographic_quotes_any_order_engine_by_id() -> None:
    async with running() as h:
        text = (
            f"create reason=‘db move’ max_files=3 reserve=2 schedule=“30 1 * * 1-5” "
            f"engine={PROD_ID}"
        )
        await h.driver.command(ALICE, CHANNEL, text)
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval")
        assert "30 1 * * 1-5" in confirmation.all_text
        assert "db move" in confirmation.all_text


async def test_quick_path_edit_opens_the_modal_prefilled() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, QUICK)
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Edit")
        await h.driver.click(ALICE, "Edit", message=confirmation)
        view = await h.driver.wait_for_view(ALICE)
        assert _input(view, "Schedule")["initial_value"] == "0 2 * * *"
        assert _input(view, "Retention")["initial_value"] == "7"
        assert _input(view, "Max files")["initial_value"] == "5"
        assert _input(view, "Reason")["initial_value"] == "INC-42"
        initial = _input(view, "Engine")["initial_option"]
        assert isinstance(initial, dict) and initial["value"] == PROD_ID


async def test_quick_path_cancel_stores_nothing() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, QUICK)
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval")
        await h.driver.click(ALICE, "Cancel", message=confirmation)
        await h.driver.wait_for_ephemeral(ALICE, "nothing was stored")
        assert await h.store.list_channel(CHANNEL) == []
        assert h.fake.messages(CHANNEL) == []


async def test_quick_path_partial_opens_the_modal_prefilled() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, 'create schedule="0 3 * * *" engine=staging')
        view = await h.driver.wait_for_view(ALICE)
        assert _input(view, "Schedule")["initial_value"] == "0 3 * * *"
        initial = _input(view, "Engine")["initial_option"]
        assert isinstance(initial, dict) and text_of(initial["text"]) == "staging"
        assert "initial_value" not in _input(view, "Retention")


async def test_quick_path_invalid_names_each_bad_value() -> None:
    async with running() as h:
        text = 'create engine=nope schedule="0 0 30 2 *" reserve=abc max_files=0 colour=blue'
        await h.driver.command(ALICE, CHANNEL, text)
        error = await h.driver.wait_for_ephemeral(ALICE, "Nothing was stored")
        shown = error.all_text
        assert "`colour`" in shown
        assert "Engine" in shown and "nope" in shown
        assert "Schedule" in shown
        assert "Retention days" in shown and "abc" in shown
        assert "Max files" in shown
        assert h.fake.calls_to("views.open") == []
        assert await h.store.list_channel(CHANNEL) == []


async def test_preview_stores_nothing() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "preview `0 2 * * 1-5`")
        shown = await h.driver.wait_for_ephemeral(ALICE, "0 2 * * 1-5")
        assert "02:00" in shown.all_text
        assert "nothing was stored" in shown.all_text
        assert shown.all_text.count("•") >= 5
        assert await h.store.list_channel(CHANNEL) == []

        await h.driver.command(ALICE, CHANNEL, "preview 0 0 30 2 *")
        refused = await h.driver.wait_for_ephemeral(ALICE, "Not a schedule")
        assert "30" in refused.all_text


async def test_list_and_status_and_cancel() -> None:
    async with running() as h:
        request_id = await h.create_request()
        await h.driver.command(BOB, CHANNEL, "list")
        listing = await h.driver.wait_for_ephemeral(BOB, request_id)
        assert "Waiting for approval" in listing.all_text

        await h.driver.command(MALLORY, CHANNEL, f"cancel {request_id}")
        refused = await h.driver.wait_for_ephemeral(MALLORY, "can cancel")
        assert ALICE in refused.all_text
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]

        await h.driver.command(ALICE, CHANNEL, f"cancel {request_id.upper()}")
        await h.driver.wait_for_ephemeral(ALICE, "is cancelled")
        request = await h.store.get(request_id)
        assert request is not None and request.state is State.CANCELLED
        approval = h.fake.message(CHANNEL, request.message_ts or "")
        assert _buttons(approval.blocks) == []
        assert "Cancelled" in approval.all_text

        await h.driver.command(BOB, CHANNEL, f"status {request_id}")
        # (The answer comes after the ack: wait for the status itself, not the list's "history".)
        status = await h.driver.wait_for_ephemeral(BOB, f"Backup policy request {request_id}")
        assert "History" in status.all_text
        assert "pending" in status.all_text and "cancelled" in status.all_text

        await h.driver.command(BOB, CHANNEL, "list")
        listing = await h.driver.wait_for_ephemeral(BOB, "Recent")
        assert request_id in listing.all_text

        await h.driver.command(BOB, CHANNEL, "status bkp-zzzzzz")
        await h.driver.wait_for_ephemeral(BOB, "no backup policy request")


async def test_help_empty_and_unknown_show_usage() -> None:
    async with running() as h:
        for user, text in ((ALICE, "help"), (BOB, ""), (MALLORY, "frobnicate <!here>")):
            await h.driver.command(user, CHANNEL, text)
            usage = await h.driver.wait_for_ephemeral(user, "/cse-backup create")
            assert "preview" in usage.all_text and "status" in usage.all_text
        unknown = h.driver.find_ephemeral(MALLORY, "do not know")
        assert "<!here>" not in json.dumps(unknown.blocks)


async def test_allowed_channels_and_requesters() -> None:
    async with running(allowed_channels=(CHANNEL,), requesters=(ALICE,)) as h:
        await h.driver.command(ALICE, "C0ELSEWHR", "create")
        refused = await h.driver.wait_for_ephemeral(ALICE, "works only in")
        assert f"<#{CHANNEL}>" in json.dumps(refused.blocks) or CHANNEL in refused.text
        await h.driver.command(BOB, CHANNEL, QUICK)
        refused = await h.driver.wait_for_ephemeral(BOB, "can request")
        assert ALICE in json.dumps(refused.blocks) + refused.text
        assert h.fake.calls_to("views.open") == []
        await h.driver.command(ALICE, CHANNEL, "create")
        await h.driver.wait_for_view(ALICE)
