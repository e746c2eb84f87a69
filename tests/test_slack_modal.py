"""The modal: field errors, the engine picker in each of its forms, Edit, the shortcut, App Home,
and what people hear when Redis is down."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.core.requests import State
from bot.slack import views
from bot.slack.views import ViewMeta
from tests.fakes.slack_api import text_of
from tests.slack_harness import (
    ALICE,
    APPROVALS,
    BOB,
    CHANNEL,
    PROD_ID,
    STAGING_ID,
    Harness,
    approval_request_id,
    new_approval_message,
    running,
)

GOOD = {"Engine": "prod", "Schedule (cron)": "0 2 * * *", "Retention days": "7", "Max files": "5"}


def _block(view: dict[str, object], block_id: str) -> dict[str, object]:
    blocks = view["blocks"]
    assert isinstance(blocks, list)
    found: dict[str, object] = next(b for b in blocks if b.get("block_id") == block_id)
    return found


async def test_bad_values_come_back_on_their_fields() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        response = await h.driver.submit_view(
            ALICE,
            form,
            {**GOOD, "Schedule (cron)": "0 0 30 2 *", "Retention days": "abc", "Max files": "0"},
        )
        body = response.json()
        assert body["response_action"] == "errors"
        assert set(body["errors"]) == {"schedule", "reserve", "max_files"}
        assert "February" in body["errors"]["schedule"]
        assert "abc" in body["errors"]["reserve"]
        still = h.driver.current_view(ALICE)
        assert still is not None and still["id"] == form["id"]
        assert await h.store.list_channel(CHANNEL) == []

        response = await h.driver.submit_view(
            ALICE, form, {**GOOD, "Schedule (cron)": "0 2 * * ? *"}
        )
        assert "schedule" in response.json()["errors"]


async def test_the_confirmation_shows_warnings_and_edit_goes_back() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        await h.driver.submit_view(
            ALICE, form, {**GOOD, "Schedule (cron)": "* 2 * * *", "Retention days": "30"}
        )
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None
        shown = json.dumps(confirm["blocks"])
        assert "did you mean" in shown  # the classic `* 2` slip
        assert "10" in shown  # retention above the documented 10 days
        await h.driver.click(ALICE, "Edit", view=confirm)
        again = await h.driver.wait_for_view(ALICE)
        assert again["callback_id"] == "backup_form"
        assert _block(again, "schedule")["element"]["initial_value"] == "* 2 * * *"  # type: ignore[index]


async def test_engines_from_the_cse_list() -> None:
    async with running(cse_engines=(), iam_project_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9") as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        engine = _block(form, "engine")["element"]
        assert isinstance(engine, dict) and engine["type"] == "external_select"
        options = await h.driver.options(ALICE, form, "engine", "stag")
        listed = options.json()["options"]
        assert [o["value"] for o in listed] == [STAGING_ID]
        assert "staging" in text_of(listed[0]["text"])
        listed = (await h.driver.options(ALICE, form, "engine", "")).json()["options"]
        assert {o["value"] for o in listed} >= {PROD_ID, STAGING_ID}
        assert h.cse.engine_requests()[0].path.endswith(
            "/v2/0a1b2c3d4e5f60718293a4b5c6d7e8f9/enginemgr/engines"
        )

        chosen = next(o for o in listed if o["value"] == PROD_ID)
        await h.driver.submit_view(ALICE, form, {**GOOD, "Engine": chosen})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and confirm["callback_id"] == "backup_confirm"
        await h.driver.submit_view(ALICE, confirm)
        await h.driver.wait_for_message("Approve", channel=CHANNEL)
        [request] = await h.store.list_channel(CHANNEL)
        assert (request.engine_id, request.engine_name) == (PROD_ID, "prod")

        await h.driver.command(
            ALICE, CHANNEL, "create engine=prod schedule=@daily reserve=1 max_files=1"
        )
        confirmation = await h.driver.wait_for_ephemeral(ALICE, "Request approval")
        assert "0 0 * * *" in confirmation.all_text


async def test_engine_typed_by_id_when_none_are_known() -> None:
    async with running(cse_engines=()) as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        assert _block(form, "engine")["element"]["type"] == "plain_text_input"  # type: ignore[index]
        response = await h.driver.submit_view(ALICE, form, {**GOOD, "Engine": "not an id!"})
        assert "engine" in response.json()["errors"]
        await h.driver.submit_view(ALICE, form, {**GOOD, "Engine": PROD_ID})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None and confirm["callback_id"] == "backup_confirm"


async def test_global_shortcut_asks_for_the_channel() -> None:
    async with running() as h:
        await h.driver.shortcut(ALICE, "create_backup_policy")
        form = await h.driver.wait_for_view(ALICE)
        assert _block(form, "channel")["element"]["type"] == "conversations_select"  # type: ignore[index]
        await h.driver.submit_view(ALICE, form, {**GOOD, "channel": APPROVALS})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None
        await h.driver.submit_view(ALICE, confirm)
        await h.driver.wait_for_message("Approve", channel=APPROVALS)


async def test_app_home_lists_what_waits_for_the_viewer() -> None:
    async with running() as h:
        request_id = await h.create_request()
        await h.driver.app_home_opened(BOB)
        await h.fake.async_wait_for("views.publish", lambda c: c.args.get("user_id") == BOB)
        home = h.fake.home(BOB)
        assert home is not None
        assert request_id in json.dumps(home["blocks"])
        await h.driver.app_home_opened(ALICE)
        await h.fake.async_wait_until(lambda: h.fake.home(ALICE) is not None)
        mine = json.dumps(h.fake.home(ALICE))
        assert "Nothing waits for you" in mine and request_id in mine


async def test_redis_down_is_said_plainly_and_nothing_is_half_written() -> None:
    async with running(redis_url="redis://127.0.0.1:1/0") as h:
        quick = 'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5'
        await h.driver.command(ALICE, CHANNEL, quick)
        said = await h.driver.wait_for_ephemeral(ALICE, "request store is not answering")
        assert "nothing was saved" in said.all_text

        # The form's step needs no store (the confirmation view carries the draft) ...
        confirm = await _to_confirmation(h)
        # ... sending it for approval does, and says so in the modal.
        response = await h.driver.submit_view(ALICE, confirm)
        body = response.json()
        assert body["response_action"] == "push"
        assert "request store is not answering" in json.dumps(body["view"])
        assert h.fake.messages(CHANNEL) == []
        assert h.cse.create_requests() == []


# --- the confirmation step carries the draft ----------------------------------------------------


async def _to_confirmation(h: Harness) -> dict[str, Any]:
    await h.driver.command(ALICE, CHANNEL, "create")
    form = await h.driver.wait_for_view(ALICE)
    response = await h.driver.submit_view(ALICE, form, GOOD)
    assert response.json()["response_action"] == "update"
    confirm = h.driver.current_view(ALICE)
    assert confirm is not None and confirm["callback_id"] == "backup_confirm"
    return confirm


async def test_the_confirmation_view_carries_the_draft_and_the_store_is_not_written() -> None:
    async with running() as h:
        confirm = await _to_confirmation(h)
        meta = ViewMeta.load(confirm["private_metadata"])
        assert meta.form is not None and meta.form.id == meta.draft
        assert meta.form.schedule == "0 2 * * *" and meta.form.reserve == 7
        assert await h.store.get_draft(meta.draft or "") is None  # nothing stored for the form
        await h.driver.submit_view(ALICE, confirm)
        approval = await new_approval_message(h.fake, CHANNEL, set())
        request = await h.store.get(approval_request_id(approval))
        assert request is not None and request.state is State.PENDING
        assert request.requester == ALICE and request.reserve == 7
        # The same confirmation again (a double click, or a replay): refused, nothing new.
        again = {**confirm, "state": {"values": {}}}
        payload = {**h.driver._base("view_submission", ALICE), "view": again, "response_urls": []}
        response = await h.driver.send_interaction(payload)
        assert "already sent" in json.dumps(response.json())
        assert len(await h.store.list_channel(CHANNEL)) == 1


async def test_a_carried_draft_expires_like_a_stored_one() -> None:
    async with running() as h:
        confirm = await _to_confirmation(h)
        h.clock.advance(timedelta(hours=2, minutes=1))
        response = await h.driver.submit_view(ALICE, confirm)
        body = response.json()
        assert body["response_action"] == "push"
        assert "expired" in json.dumps(body["view"])
        assert await h.store.list_channel(CHANNEL) == []


async def test_a_draft_too_long_for_the_view_is_kept_in_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views, "METADATA_LIMIT", 60)  # as if the draft were over Slack's 3000
    async with running() as h:
        confirm = await _to_confirmation(h)
        meta = ViewMeta.load(confirm["private_metadata"])
        assert meta.form is None
        assert await h.store.get_draft(meta.draft or "") is not None
        await h.driver.submit_view(ALICE, confirm)
        approval = await new_approval_message(h.fake, CHANNEL, set())
        assert approval_request_id(approval)
