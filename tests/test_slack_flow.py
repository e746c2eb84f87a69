"""The whole flow over HTTP: command, modal, confirmation, approval, the one CSE call, result."""

from __future__ import annotations

import json

from bot.core.requests import State
from tests.slack_harness import ALICE, BOB, CHANNEL, PROD_ID, running


async def test_modal_to_created_policy() -> None:
    async with running() as h:
        d = h.driver
        await d.command(ALICE, CHANNEL, "create")
        form = await d.wait_for_view(ALICE)
        assert form["title"]["text"] == "CSE backup policy"
        response = await d.submit_view(
            ALICE,
            form,
            {
                "Engine": "prod",
                "Schedule (cron)": "0 2 * * *",
                "Retention days": "7",
                "Max files": "5",
                "Reason": "INC-42 <!channel>",
            },
        )
        assert response.json()["response_action"] == "update"
        confirm = d.current_view(ALICE)
        assert confirm is not None
        assert confirm["submit"]["text"] == "Request approval"
        text = json.dumps(confirm["blocks"])
        assert "0 2 * * *" in text and "02:00" in text
        assert "Europe/Berlin" in text  # Alice's own zone differs from UTC
        await d.submit_view(ALICE, confirm)

        approval = await d.wait_for_message("Approve", channel=CHANNEL)
        assert "&lt;!channel&gt;" in json.dumps(approval.blocks)
        await d.click(BOB, "Approve", message=approval)
        result = await d.wait_for_message("Backup policy created", channel=CHANNEL)

        posts = h.cse.create_requests()
        assert len(posts) == 1
        post = posts[0]
        assert post.path == f"/cseengine/v1/engines/{PROD_ID}/backup-strategies"
        assert post.json == {"schedule": "0 2 * * *", "reserve": 7, "maxFiles": 5}
        assert post.header("X-Auth-Token") == h.cse.static_token
        assert post.header("X-Enterprise-Project-ID") == "0"
        assert post.header("Content-Type") == "application/json;charset=UTF-8"
        assert post.header("Accept") == "application/json"

        policy_id = h.cse.policies[0]["id"]
        assert str(policy_id) in result.all_text
        assert "<!date^" in json.dumps(result.blocks)
        updated = d.find_message("created", channel=CHANNEL)
        del updated
        final = h.fake.message(CHANNEL, approval.ts)
        assert not any(b.get("type") == "actions" for b in final.blocks)
        assert BOB in final.all_text
        requests = await h.store.list_channel(CHANNEL)
        assert [r.state for r in requests] == [State.CREATED]


async def test_optional_numbers_left_out_of_the_cse_body() -> None:
    async with running() as h:
        await h.driver.command(ALICE, CHANNEL, "create")
        form = await h.driver.wait_for_view(ALICE)
        await h.driver.submit_view(ALICE, form, {"Engine": "prod", "Schedule (cron)": "@weekly"})
        confirm = h.driver.current_view(ALICE)
        assert confirm is not None
        await h.driver.submit_view(ALICE, confirm)
        approval = await h.driver.wait_for_message("Waiting for approval", channel=CHANNEL)
        await h.driver.click(BOB, "Approve", message=approval)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL)
        [post] = h.cse.create_requests()
        assert post.body == b'{"schedule":"0 0 * * 0"}'


INJECTED = "<!channel> <@U0MALLORY> <!subteam^S0ALL> <https://evil.example|click> & done"


async def test_typed_text_can_never_ping_or_link() -> None:
    async with running() as h:
        text = f'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason="{INJECTED}"'
        request_id = await h.create_request(text)
        await h.driver.command(BOB, CHANNEL, "list")
        await h.driver.wait_for_ephemeral(BOB, request_id)
        await h.driver.command(BOB, CHANNEL, f"status {request_id}")
        await h.driver.wait_for_ephemeral(BOB, "History")
        approval = h.driver.find_message("Waiting for approval", channel=CHANNEL)
        await h.driver.click(BOB, "Reject", message=approval)
        view = await h.driver.wait_for_view(BOB)
        await h.driver.submit_view(BOB, view, {"Reason": INJECTED})
        await h.wait_stored(request_id, lambda r: r.state is State.REJECTED)
        await h.fake.async_wait_for("chat.update")

        shown = [json.dumps(m.blocks) + m.text for m in h.fake.messages()]
        shown += [json.dumps(e.blocks) + e.text for e in h.fake.ephemerals()]
        shown += [json.dumps(v) for v in h.fake.views_by_id.values()]
        everything = "\n".join(shown)
        for raw in ("<!channel>", "<@U0MALLORY>", "<!subteam^S0ALL>", "<https://evil"):
            assert raw not in everything
        assert "&lt;!channel&gt;" in everything
