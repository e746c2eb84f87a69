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
