"""The engine picker when engines come from CSE's engine list: an external select served by the
options handler (filtered, at most 100, cached briefly), and engines that are not running shown
but refused on submit. Driven over signed HTTP against the fake CSE."""

from __future__ import annotations

from typing import Any

from tests.fakes.slack_api import text_of
from tests.slack_harness import ALICE, CHANNEL, PROD_ID, Harness, running

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
LISTED = {"cse_engines": (), "iam_project_id": PROJECT}
GOOD = {"Schedule (cron)": "0 2 * * *", "Retention days": "7", "Max files": "5"}

FROZEN_ID = "11111111-2222-4333-8444-555555555555"
RUNNING_ID = "99999999-8888-4777-8666-555555555555"


async def _form(h: Harness) -> dict[str, Any]:
    await h.driver.command(ALICE, CHANNEL, "create")
    return await h.driver.wait_for_view(ALICE)


async def _options(h: Harness, form: dict[str, Any], typed: str) -> list[dict[str, Any]]:
    response = await h.driver.options(ALICE, form, "engine", typed)
    options: list[dict[str, Any]] = response.json()["options"]
    return options


async def test_options_filter_by_name_or_id_and_show_type_and_status() -> None:
    async with running(**LISTED) as h:
        form = await _form(h)
        element = next(b for b in form["blocks"] if b.get("block_id") == "engine")["element"]
        assert element["type"] == "external_select" and element["min_query_length"] == 0

        by_name = await _options(h, form, "PRO")
        assert [o["value"] for o in by_name] == [PROD_ID]
        assert text_of(by_name[0]["text"]) == "prod (CSE2, Available)"
        by_id = await _options(h, form, PROD_ID[:8].upper())
        assert [o["value"] for o in by_id] == [PROD_ID]
        assert await _options(h, form, "no such engine") == []
        # Three look-ups, one engine list from CSE: it is cached briefly.
        assert len(h.cse.engine_requests()) == 1


async def test_at_most_100_options() -> None:
    async with running(**LISTED) as h:
        h.cse.engines = [
            {"id": f"eng-{i:03d}", "name": f"engine-{i:03d}", "type": "CSE2", "status": "Available"}
            for i in range(150)
        ]
        form = await _form(h)
        everything = await _options(h, form, "")
        assert len(everything) == 100
        assert text_of(everything[0]["text"]).startswith("engine-000")
        narrowed = await _options(h, form, "engine-14")
        assert [o["value"] for o in narrowed] == [f"eng-{i}" for i in range(140, 150)]


async def test_engines_not_running_are_shown_but_refused_with_the_reason() -> None:
    async with running(**LISTED) as h:
        h.cse.engines = [
            *h.cse.engines,
            {"id": FROZEN_ID, "name": "frozen", "type": "CSE2", "status": "Frozen"},
            {"id": RUNNING_ID, "name": "shouting", "type": "Nacos", "status": "RUNNING"},
        ]
        form = await _form(h)
        [frozen] = await _options(h, form, "froz")
        assert text_of(frozen["text"]) == "frozen (CSE2, Frozen) - not available"

        response = await h.driver.submit_view(ALICE, form, {**GOOD, "Engine": frozen})
        body = response.json()
        assert body["response_action"] == "errors"
        assert set(body["errors"]) == {"engine"}
        assert "Frozen" in body["errors"]["engine"] and "running engine" in body["errors"]["engine"]

        # Status in any case: RUNNING and Available are usable.
        [running_engine] = await _options(h, form, "shout")
        assert "not available" not in text_of(running_engine["text"])
        response = await h.driver.submit_view(ALICE, form, {**GOOD, "Engine": running_engine})
        assert response.json()["response_action"] == "update"
        assert h.cse.create_requests() == []


async def test_the_quick_path_refuses_an_engine_that_is_not_running() -> None:
    async with running(**LISTED) as h:
        h.cse.engines = [
            {"id": FROZEN_ID, "name": "frozen", "type": "CSE2", "status": "Unavailable"}
        ]
        await h.driver.command(
            ALICE, CHANNEL, "create engine=frozen schedule=@daily reserve=1 max_files=1"
        )
        said = await h.driver.wait_for_ephemeral(ALICE, "Nothing was stored or sent")
        assert "Unavailable" in said.all_text and "Engine" in said.all_text


async def test_engine_list_down_gives_no_options_and_an_id_still_works() -> None:
    async with running(**LISTED) as h:
        form = await _form(h)
        for _ in range(2):
            h.cse.respond_next(
                500, {"error_code": "SVCSTG.500", "error_msg": "boom"}, target="engines"
            )
        assert await _options(h, form, "") == []
        typed = {"text": {"type": "plain_text", "text": PROD_ID}, "value": PROD_ID}
        response = await h.driver.submit_view(ALICE, form, {**GOOD, "Engine": typed})
        assert response.json()["response_action"] == "update"
        assert len(h.cse.engine_requests()) == 2  # both answered 500: nothing was cached
