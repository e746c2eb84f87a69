"""The App Home tab: its three sections, clicks made in it, and its republishing after changes,
driven over signed HTTP."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from bot.core.requests import State
from tests.fakes.slack_api import find_button, text_of
from tests.slack_harness import ALICE, BOB, CAROL, CHANNEL, MALLORY, Harness, running


def _home(h: Harness, user: str) -> dict[str, Any]:
    home = h.fake.home(user)
    assert home is not None, f"no Home tab published for {user}"
    return home


def _section_after(home: dict[str, Any], title: str) -> str:
    """The visible text between the header `title` and the next header."""
    texts: list[str] = []
    inside = False
    for block in home["blocks"]:
        if block["type"] == "header":
            inside = text_of(block["text"]) == title
            continue
        if inside:
            texts.append(text_of(block))
    return "\n".join(texts)


async def _wait_home(h: Harness, user: str, title: str, text: str, present: bool = True) -> None:
    def shown() -> bool:
        home = h.fake.home(user)
        return home is not None and (text in _section_after(home, title)) == present

    if not await h.fake.async_wait_until(shown):
        got = _section_after(_home(h, user), title) if h.fake.home(user) else None
        raise AssertionError(
            f"{user}'s Home: {title!r} never {'had' if present else 'lost'} "
            f"{text!r}; it shows {got!r}"
        )


def _publishes(h: Harness, user: str) -> int:
    return len([c for c in h.fake.calls_to("views.publish") if c.args.get("user_id") == user])


async def test_the_three_sections_for_requester_and_approver() -> None:
    async with running() as h:
        request_id = await h.create_request()
        await h.driver.app_home_opened(BOB)
        await _wait_home(h, BOB, "Waiting for your approval", request_id)
        home = _home(h, BOB)
        headers = [text_of(b["text"]) for b in home["blocks"] if b["type"] == "header"]
        assert headers == [
            "Waiting for your approval",
            "Your requests",
            "Recently created policies",
        ]
        assert find_button(home["blocks"], "Approve") is not None
        assert find_button(home["blocks"], "Reject") is not None
        assert "Nothing waits for you" not in json.dumps(home)

        await h.driver.app_home_opened(ALICE)
        await _wait_home(h, ALICE, "Your requests", request_id)
        mine = _home(h, ALICE)
        assert "Nothing waits for you" in _section_after(mine, "Waiting for your approval")
        assert "pending" in _section_after(mine, "Your requests")
        assert find_button(mine["blocks"], "Approve") is None  # never your own request
        assert find_button(mine["blocks"], "Cancel") is not None
        assert "No policy created yet" in _section_after(mine, "Recently created policies")


async def test_approve_from_home_calls_cse_once_and_refreshes_the_tabs() -> None:
    async with running() as h:
        request_id = await h.create_request()
        await h.driver.app_home_opened(ALICE)
        await h.driver.app_home_opened(BOB)
        await _wait_home(h, BOB, "Waiting for your approval", request_id)

        # The click carries no message: the flow finds the request by its id.
        await h.driver.click(BOB, "Approve", view=_home(h, BOB))
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        request = await h.wait_stored(request_id, lambda r: r.state is State.CREATED)
        assert request.approved_by == (BOB,)
        assert len(h.cse.create_requests()) == 1
        policy_id = str((request.policy or {})["id"])

        # The approval message in the channel shows the outcome too.
        assert request.message_channel and request.message_ts
        message = h.fake.message(request.message_channel, request.message_ts)
        assert find_button(message.blocks, "Approve") is None

        # Both tabs are republished without being opened again.
        await _wait_home(h, BOB, "Recently created policies", policy_id)
        await _wait_home(h, BOB, "Waiting for your approval", request_id, present=False)
        await _wait_home(h, ALICE, "Recently created policies", policy_id)
        await _wait_home(h, ALICE, "Your requests", "created")


async def test_a_new_request_reaches_approvers_who_opened_home_but_not_others() -> None:
    async with running(approvers=(BOB, CAROL)) as h:
        for user in (BOB, MALLORY):
            await h.driver.app_home_opened(user)
        await _wait_home(h, BOB, "Waiting for your approval", "Nothing waits for you")
        await h.fake.async_wait_until(lambda: h.fake.home(MALLORY) is not None)
        mallory_before = _publishes(h, MALLORY)

        request_id = await h.create_request()
        await _wait_home(h, BOB, "Waiting for your approval", request_id)
        # Carol never opened the tab, Mallory may not approve: nothing published for them.
        await h.driver.app_home_opened(ALICE)  # a later publish, to be sure the worker ran
        await _wait_home(h, ALICE, "Your requests", request_id)
        assert h.fake.home(CAROL) is None
        assert _publishes(h, MALLORY) == mallory_before


async def test_n_of_m_from_home_shows_the_count_and_drops_it_for_who_approved() -> None:
    async with running(required_approvals=2) as h:
        request_id = await h.create_request()
        await h.driver.app_home_opened(BOB)
        await h.driver.app_home_opened(CAROL)
        await _wait_home(h, CAROL, "Waiting for your approval", request_id)
        await _wait_home(h, BOB, "Waiting for your approval", request_id)

        await h.driver.click(BOB, "Approve", view=_home(h, BOB))
        await h.wait_stored(request_id, lambda r: len(r.approvals) == 1)
        await _wait_home(h, CAROL, "Waiting for your approval", "1 of 2 approvals")
        await _wait_home(h, BOB, "Waiting for your approval", request_id, present=False)
        assert h.cse.create_requests() == []

        await h.driver.click(CAROL, "Approve", view=_home(h, CAROL))
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        assert len(h.cse.create_requests()) == 1


async def test_a_refused_click_in_home_is_answered_in_home() -> None:
    async with running(approval_ttl=3600) as h:
        request_id = await h.create_request()
        await h.driver.app_home_opened(BOB)
        await _wait_home(h, BOB, "Waiting for your approval", request_id)
        h.clock.advance(timedelta(hours=2))  # expired, before any sweep noticed
        await h.driver.click(BOB, "Approve", view=_home(h, BOB))

        def answered() -> bool:
            return "expired" in text_of(_home(h, BOB)["blocks"][0])

        assert await h.fake.async_wait_until(answered)
        await _wait_home(h, BOB, "Waiting for your approval", request_id, present=False)
        assert h.cse.create_requests() == []
        assert not h.fake.calls_to("chat.postEphemeral")


async def test_reject_and_cancel_from_home() -> None:
    async with running() as h:
        first = await h.create_request()
        await h.driver.app_home_opened(BOB)
        await _wait_home(h, BOB, "Waiting for your approval", first)
        await h.driver.click(BOB, "Reject", view=_home(h, BOB))
        form = await h.driver.wait_for_view(BOB)
        await h.driver.submit_view(BOB, form, {"Reason": "wrong engine"})
        await h.wait_stored(first, lambda r: r.state is State.REJECTED)
        await _wait_home(h, BOB, "Waiting for your approval", first, present=False)

        second = await h.create_request()
        await h.driver.app_home_opened(ALICE)
        await _wait_home(h, ALICE, "Your requests", second)
        assert "rejected" in _section_after(_home(h, ALICE), "Your requests")
        await h.driver.click(ALICE, "Cancel", view=_home(h, ALICE))
        await h.wait_stored(second, lambda r: r.state is State.CANCELLED)
        await _wait_home(h, ALICE, "Your requests", "cancelled")
        request = await h.store.get(second)
        assert request is not None and request.message_ts
        message = h.fake.message(request.message_channel or CHANNEL, request.message_ts)
        assert find_button(message.blocks, "Approve") is None


async def test_many_requests_stay_within_slacks_block_limit() -> None:
    async with running() as h:
        ids = [await h.create_request() for _ in range(12)]
        await h.driver.app_home_opened(BOB)
        await _wait_home(h, BOB, "Waiting for your approval", "more wait")
        home = _home(h, BOB)
        assert len(home["blocks"]) <= 100
        waiting = _section_after(home, "Waiting for your approval")
        assert sum(request_id in waiting for request_id in ids) == 10
