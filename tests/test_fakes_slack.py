"""The Slack stand-ins behave like Slack: checked with the real slack_sdk clients and a real
Bolt app driven over signed HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltRequest, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web import WebClient
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack_api import FakeSlack, block_problems, text_of
from tests.fakes.slack_driver import ClientRefused, NotAcknowledged, SlackDriver, state_values

TOKEN = "xoxb-test"
SECRET = "test-signing-secret"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def modal(title: str = "CSE backup policy", blocks: list[dict[str, Any]] | None = None) -> dict:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks if blocks is not None else [section("hello")],
    }


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(TOKEN) as server:
        server.add_user("U1", real_name="Ann Example", tz="Europe/Berlin")
        server.add_user("U2", real_name="Bob Example", tz="UTC")
        server.add_usergroup("S1", ["U1", "U2"], handle="oncall")
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(base_url=fake.url, token=TOKEN)


async def open_modal(fake: FakeSlack, client: AsyncWebClient, view: dict, user: str = "U1") -> Any:
    return await client.views_open(trigger_id=fake.issue_trigger_id(user), view=view)


# ---------------------------------------------------------------------------------------------
# The fake Web API, through the real AsyncWebClient
# ---------------------------------------------------------------------------------------------


async def test_post_message_then_update_round_trip(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(
        channel="C1", text="fallback", blocks=[section("*Approve?*")]
    )
    assert posted["channel"] == "C1"
    assert posted["message"]["blocks"][0]["block_id"]  # Slack fills in block ids

    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="done")

    assert updated["ts"] == posted["ts"]
    message = fake.message("C1", posted["ts"])
    assert message.text == "done"
    assert message.blocks[0]["text"]["text"] == "*Approve?*"  # omitted blocks are kept
    assert [old.text for old in message.history] == ["fallback"]
    assert fake.messages("C1") == [message]
    assert fake.calls_to("chat.postMessage")[0].content_type == "application/json"
    assert "*Approve?*" in fake.find_message("approve").all_text


async def test_update_of_unknown_message_is_message_not_found(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"


async def test_wrong_or_missing_token(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=fake.url, token="xoxb-wrong").auth_test()
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=fake.url).auth_test()
    assert err.value.response["error"] == "not_authed"
    assert [c.token for c in fake.calls_to("auth.test")] == ["xoxb-wrong", None]


async def test_auth_test_identifies_the_bot(fake: FakeSlack, client: AsyncWebClient) -> None:
    result = await client.auth_test()
    assert (result["user_id"], result["bot_id"], result["team_id"]) == ("U0BOT", "B0BOT", "T0FAKE")


async def test_unknown_method(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.api_call("chat.frobnicate")
    assert err.value.response["error"] == "unknown_method"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": "t", "blocks": [section(str(i)) for i in range(51)]}, "invalid_blocks"),
        ({"text": "t", "blocks": [section("x" * 3001)]}, "invalid_blocks"),
        ({"text": "t", "blocks": [section("")]}, "invalid_blocks"),
        (
            {"text": "t", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
            "invalid_blocks",
        ),
        (
            {
                "text": "t",
                "blocks": [section("a") | {"block_id": "b"}, section("c") | {"block_id": "b"}],
            },
            "invalid_blocks",
        ),
        pytest.param({}, "no_text", marks=pytest.mark.filterwarnings("ignore::UserWarning")),
        ({"text": "x" * 40_001}, "msg_too_long"),
    ],
)
async def test_post_message_refusals(
    client: AsyncWebClient, kwargs: dict[str, Any], error: str
) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", **kwargs)
    assert err.value.response["error"] == error


async def test_block_limits_accept_the_maximum(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(
        channel="C1", text="t", blocks=[section(str(i)) for i in range(50)]
    )
    await client.chat_postMessage(channel="C1", text="t", blocks=[section("x" * 3000)])
    opened = await open_modal(fake, client, modal(blocks=[section(str(i)) for i in range(100)]))
    assert len(opened["view"]["blocks"]) == 100


async def test_invalid_blocks_names_the_place(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(
            channel="C1", text="t", blocks=[section("ok"), section("x" * 3001)]
        )
    assert any("/blocks/1/text/text" in e for e in err.value.response["errors"])


async def test_modal_limits(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await open_modal(fake, client, modal(blocks=[section(str(i)) for i in range(101)]))
    assert err.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as err:
        await open_modal(fake, client, modal(title="x" * 25))
    assert err.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as err:
        await open_modal(
            fake, client, modal() | {"submit": {"type": "plain_text", "text": "s" * 25}}
        )
    assert err.value.response["error"] == "invalid_arguments"
    input_block = {
        "type": "input",
        "label": {"type": "plain_text", "text": "Reason"},
        "element": {"type": "plain_text_input"},
    }
    with pytest.raises(SlackApiError) as err:  # inputs need a submit button
        await open_modal(fake, client, modal(blocks=[input_block]))
    assert err.value.response["error"] == "invalid_arguments"


async def test_channel_refusals(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.not_in_channel.add("C9")
    fake.missing_channels.add("C404")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C9", text="x")
    assert err.value.response["error"] == "not_in_channel"
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C404", text="x")
    assert err.value.response["error"] == "channel_not_found"
    info = await client.conversations_info(channel="C9")
    assert info["channel"]["is_member"] is False


async def test_trigger_ids_expire_and_are_single_use(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id="123.456.unknown", view=modal())
    assert err.value.response["error"] == "expired_trigger_id"

    old = fake.issue_trigger_id("U1")
    fake.expire_trigger(old)
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=old, view=modal())
    assert err.value.response["error"] == "expired_trigger_id"

    fresh = fake.issue_trigger_id("U1")
    opened = await client.views_open(trigger_id=fresh, view=modal())
    assert opened["view"]["state"] == {"values": {}}
    assert fake.last_view("U1") == opened["view"]
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=fresh, view=modal())
    assert err.value.response["error"] == "trigger_exchanged"


async def test_trigger_lifetime_follows_the_clock() -> None:
    now = [100.0]
    with FakeSlack(TOKEN, clock=lambda: now[0]) as fake:
        client = AsyncWebClient(base_url=fake.url, token=TOKEN)
        trigger = fake.issue_trigger_id("U1")
        now[0] += 3.5
        with pytest.raises(SlackApiError) as err:
            await client.views_open(trigger_id=trigger, view=modal())
        assert err.value.response["error"] == "expired_trigger_id"


async def test_views_update_honours_hash(fake: FakeSlack, client: AsyncWebClient) -> None:
    opened = (await open_modal(fake, client, modal()))["view"]
    first = await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Two"))
    assert first["view"]["hash"] != opened["hash"]
    assert first["view"]["id"] == opened["id"]

    with pytest.raises(SlackApiError) as err:
        await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Three"))
    assert err.value.response["error"] == "hash_conflict"
    assert text_of(fake.view(opened["id"])["title"]) == "Two"


async def test_views_update_by_external_id_and_unknown(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await open_modal(fake, client, modal() | {"external_id": "req-1"})
    updated = await client.views_update(external_id="req-1", view=modal("Updated"))
    assert updated["view"]["title"]["text"] == "Updated"
    with pytest.raises(SlackApiError) as err:
        await client.views_update(view_id="VNOPE", view=modal())
    assert err.value.response["error"] == "not_found"


async def test_views_push_stacks_on_the_open_modal(fake: FakeSlack, client: AsyncWebClient) -> None:
    root = (await open_modal(fake, client, modal()))["view"]
    pushed = await client.views_push(trigger_id=fake.issue_trigger_id("U1"), view=modal("Reason"))
    assert pushed["view"]["previous_view_id"] == root["id"]
    assert [v["id"] for v in fake.view_stack("U1")] == [root["id"], pushed["view"]["id"]]


async def test_views_publish_keeps_one_home_per_user(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    home = {"type": "home", "blocks": [section("Recent requests")]}
    first = await client.views_publish(user_id="U1", view=home)
    second = await client.views_publish(user_id="U1", view=home | {"blocks": [section("None")]})
    assert first["view"]["id"] == second["view"]["id"]
    assert text_of(fake.home("U1")) == "None"
    assert fake.home("U2") is None
    with pytest.raises(SlackApiError) as err:
        await client.views_publish(user_id="U1", view=home, hash=first["view"]["hash"])
    assert err.value.response["error"] == "hash_conflict"


async def test_rate_limit_answers_429_with_retry_after(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    assert err.value.response["error"] == "ratelimited"
    await client.chat_postMessage(channel="C1", text="x")  # only the next call failed
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [429, 200]


async def test_rate_limit_is_retried_by_slack_sdk_handler(fake: FakeSlack) -> None:
    client = AsyncWebClient(
        base_url=fake.url, token=TOKEN, retry_handlers=[AsyncRateLimitErrorRetryHandler()]
    )
    fake.fail_next("chat.postMessage", status=429, retry_after=0)
    posted = await client.chat_postMessage(channel="C1", text="eventually")
    assert posted["ok"]
    assert len(fake.messages("C1")) == 1


async def test_fail_next_with_error_code(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("users.info", "fatal_error", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await client.users_info(user="U1")
        assert err.value.response["error"] == "fatal_error"
    assert (await client.users_info(user="U1"))["ok"]


async def test_users_info(client: AsyncWebClient) -> None:
    user = (await client.users_info(user="U1"))["user"]
    assert user["real_name"] == "Ann Example"
    assert user["tz"] == "Europe/Berlin"
    assert user["tz_offset"] in (3600, 7200)
    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="U404")
    assert err.value.response["error"] == "user_not_found"


async def test_usergroups(client: AsyncWebClient) -> None:
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S404")
    assert err.value.response["error"] == "no_such_subteam"


async def test_ephemerals_and_permalink(fake: FakeSlack, client: AsyncWebClient) -> None:
    sent = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert [e.text for e in fake.ephemerals(user="U1")] == ["only you"]
    assert fake.ephemerals(user="U2") == []
    assert fake.ephemerals(user="U1")[0].ts == sent["message_ts"]

    posted = await client.chat_postMessage(channel="C1", text="x")
    link = await client.chat_getPermalink(channel="C1", message_ts=posted["ts"])
    assert posted["ts"].replace(".", "") in link["permalink"]


async def test_delete_dm_and_ephemeral_refusals(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="bye")
    await client.chat_delete(channel="C1", ts=posted["ts"])
    assert fake.messages("C1") == []
    assert fake.messages("C1", include_deleted=True)[0].deleted
    with pytest.raises(SlackApiError) as err:
        await client.chat_delete(channel="C1", ts=posted["ts"])
    assert err.value.response["error"] == "message_not_found"

    dm = await client.chat_postMessage(channel="U1", text="direct")
    assert dm["channel"] == "D1" and fake.messages("D1")[0].text == "direct"

    fake.not_in_channel.add("C9")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postEphemeral(channel="C9", user="U1", text="x")
    assert err.value.response["error"] == "not_in_channel"


def test_late_ack_update_does_not_undo_a_later_api_update(fake: FakeSlack) -> None:
    client = WebClient(base_url=fake.url, token=TOKEN)
    opened = client.views_open(trigger_id=fake.issue_trigger_id("U1"), view=modal("Form"))["view"]
    client.views_update(view_id=opened["id"], view=modal("Sent"))  # the app, after its ack
    ack = {"response_action": "update", "view": modal("Confirm")}
    fake.apply_view_response(opened["id"], ack, submitted_hash=opened["hash"])
    assert text_of(fake.view(opened["id"])["title"]) == "Sent"

    current = fake.view(opened["id"])
    fake.apply_view_response(opened["id"], ack, submitted_hash=current["hash"])
    assert text_of(fake.view(opened["id"])["title"]) == "Confirm"
    with pytest.raises(AssertionError, match="keys must be input block ids"):
        fake.apply_view_response(opened["id"], {"response_action": "errors", "errors": {"x": "y"}})


async def test_form_encoded_blocks_are_parsed(fake: FakeSlack, client: AsyncWebClient) -> None:
    blocks = json.dumps([section("from a form")])
    await client.api_call("chat.postMessage", data={"channel": "C1", "blocks": blocks})
    call = fake.calls_to("chat.postMessage")[0]
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.args["blocks"][0]["text"]["text"] == "from a form"
    assert fake.messages("C1")[0].blocks[0]["text"]["text"] == "from a form"


async def test_async_wait_for_sees_later_calls(fake: FakeSlack, client: AsyncWebClient) -> None:
    mark = fake.mark()
    task = asyncio.create_task(client.chat_postMessage(channel="C2", text="later"))
    call = await fake.async_wait_for(
        "chat.postMessage", lambda c: c.args["channel"] == "C2", since=mark
    )
    await task
    assert call.args["text"] == "later"
    with pytest.raises(AssertionError, match=r"no matching views\.open"):
        await fake.async_wait_for("views.open", timeout=0.05)


def test_sync_client_and_wait_for(fake: FakeSlack) -> None:
    client = WebClient(base_url=fake.url, token=TOKEN)
    worker = threading.Thread(target=lambda: client.chat_postMessage(channel="C3", text="hi"))
    worker.start()
    call = fake.wait_for("chat.postMessage")
    worker.join()
    assert call.args == {"channel": "C3", "text": "hi"}


async def test_reset_forgets_activity_but_keeps_users(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.chat_postMessage(channel="C1", text="x")
    fake.reset()
    assert fake.calls == [] and fake.messages() == []
    assert (await client.users_info(user="U1"))["ok"]


async def test_response_url_posts_are_shown(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="original")
    url = fake.issue_response_url("U1", "C1", ("message", "C1", posted["ts"]))
    webhook = AsyncWebhookClient(url)

    assert (await webhook.send(text="just for you")).status_code == 200
    assert (await webhook.send(text="replaced", replace_original=True)).status_code == 200
    too_many = [section(str(i)) for i in range(51)]
    assert (await webhook.send(blocks=too_many)).status_code == 400

    assert fake.ephemerals(user="U1")[-1].text == "just for you"
    assert fake.message("C1", posted["ts"]).text == "replaced"
    assert [c.status for c in fake.calls_to("response_url")] == [200, 200, 400]


def test_block_problems_and_text_of() -> None:
    assert block_problems([section("fine")]) == []
    assert block_problems([{"type": "nonsense"}])
    view = modal(
        blocks=[
            section("Body"),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "small"}]},
        ]
    )
    assert text_of(view).split("\n") == ["CSE backup policy", "Cancel", "Body", "small"]


# ---------------------------------------------------------------------------------------------
# The driver, against a real Bolt app
# ---------------------------------------------------------------------------------------------


def plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def option(text: str, value: str) -> dict[str, Any]:
    return {"text": plain(text), "value": value}


def button(text: str, action_id: str, value: str = "r1") -> dict[str, Any]:
    return {"type": "button", "text": plain(text), "action_id": action_id, "value": value}


def input_block(block_id: str, label: str, element: dict[str, Any], optional: bool = False) -> dict:
    return {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": element,
        "optional": optional,
    }


FORM_BLOCKS = [
    input_block(
        "engine",
        "Engine",
        {
            "type": "static_select",
            "action_id": "engine",
            "options": [option("prod", "eng-1"), option("staging", "eng-2")],
        },
    ),
    input_block(
        "schedule",
        "Schedule (cron)",
        {"type": "plain_text_input", "action_id": "cron", "initial_value": "0 2 * * *"},
    ),
    input_block(
        "reserve",
        "Retention days",
        {"type": "number_input", "action_id": "days", "is_decimal_allowed": False},
    ),
    input_block("when", "Quiet time", {"type": "timepicker", "action_id": "time"}, True),
    input_block(
        "flags",
        "Options",
        {
            "type": "checkboxes",
            "action_id": "flags",
            "options": [option("Notify", "notify"), option("Dry run", "dry")],
        },
        True,
    ),
    input_block(
        "search",
        "Other engine",
        {"type": "external_select", "action_id": "engine_search", "min_query_length": 1},
        True,
    ),
    input_block(
        "reason",
        "Reason",
        {"type": "plain_text_input", "action_id": "reason", "max_length": 20},
        True,
    ),
    {
        "type": "actions",
        "block_id": "tools",
        "elements": [
            button("Add note", "add_note"),
            {
                "type": "static_select",
                "action_id": "preset",
                "placeholder": plain("Preset"),
                "options": [option("Nightly", "0 2 * * *"), option("Hourly", "0 * * * *")],
            },
        ],
    },
]

FORM_VIEW = {
    "type": "modal",
    "callback_id": "form",
    "notify_on_close": True,
    "title": plain("CSE backup policy"),
    "submit": plain("Next"),
    "close": plain("Cancel"),
    "blocks": FORM_BLOCKS,
}


def build_bolt_app(fake: FakeSlack, seen: list[dict[str, Any]]) -> AsyncApp:
    """A small Bolt app touching each surface the driver imitates; `seen` gets every body."""
    app = AsyncApp(
        token=TOKEN, signing_secret=SECRET, client=AsyncWebClient(base_url=fake.url, token=TOKEN)
    )

    @app.command("/cse-backup")
    async def command(
        ack: AsyncAck, body: dict, client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        seen.append(body)
        text = body["text"]
        if text == "boom":
            raise RuntimeError("before ack")
        if text == "modal":
            await ack()
            await client.views_open(trigger_id=body["trigger_id"], view=FORM_VIEW)
        elif text == "confirm":
            actions = {"type": "actions", "elements": [button("Request approval", "go")]}
            await ack(text="Check this", blocks=[section("Check this"), actions])
        elif text == "later":
            await ack()
            await respond(text="answered later")
        elif text == "both":
            await ack(text="Working on it")
            await respond(text="Done")
        else:
            await ack()
            actions = {
                "type": "actions",
                "elements": [button("Approve", "approve"), button("Reject", "reject")],
            }
            await client.chat_postMessage(
                channel=body["channel_id"],
                text="Request r1",
                blocks=[section("Request r1"), actions],
            )
            await client.chat_postMessage(
                channel=body["channel_id"], thread_ts=None, text="unrelated"
            )

    @app.action("approve")
    async def approve(ack: AsyncAck, body: dict, client: AsyncWebClient) -> None:
        await ack()
        seen.append(body)
        channel, ts = body["channel"]["id"], body["message"]["ts"]
        approved = f"Approved by {body['user']['id']}"
        await client.chat_update(channel=channel, ts=ts, text=approved, blocks=[])
        await client.chat_postMessage(channel=channel, thread_ts=ts, text="thread reply")

    @app.action("go")
    async def go(ack: AsyncAck, body: dict, respond: AsyncRespond) -> None:
        await ack()
        seen.append(body)
        await respond(text="Requested", replace_original=True)

    @app.action("add_note")
    async def add_note(ack: AsyncAck, body: dict, client: AsyncWebClient) -> None:
        await ack()
        seen.append(body)
        await client.views_push(trigger_id=body["trigger_id"], view=modal("Note"))

    @app.action("preset")
    async def preset(ack: AsyncAck, body: dict, client: AsyncWebClient) -> None:
        await ack()
        seen.append(body)
        view = body["view"]
        await client.views_update(
            view_id=view["id"], hash=view["hash"], view=FORM_VIEW | {"title": plain("Preset set")}
        )

    @app.options("engine_search")
    async def engine_options(ack: AsyncAck, body: dict) -> None:
        seen.append(body)
        await ack(options=[option(f"{body['value']}-1", "eng-9")])

    @app.view("form")
    async def form(ack: AsyncAck, body: dict, view: dict) -> None:
        seen.append(body)
        if view["state"]["values"]["schedule"]["cron"]["value"] == "bad":
            await ack(response_action="errors", errors={"schedule": "not a cron expression"})
            return
        confirm = modal("Confirm", [section("Looks good")])
        await ack(
            response_action="update",
            view=confirm | {"callback_id": "confirm", "submit": plain("Request approval")},
        )

    @app.view("confirm")
    async def confirm(ack: AsyncAck, body: dict) -> None:
        seen.append(body)
        await ack()

    @app.view_closed("form")
    async def closed(ack: AsyncAck, body: dict) -> None:
        seen.append(body)
        await ack()

    @app.shortcut("open_form")
    async def shortcut(ack: AsyncAck, body: dict, client: AsyncWebClient) -> None:
        await ack()
        seen.append(body)
        await client.views_open(trigger_id=body["trigger_id"], view=FORM_VIEW)

    @app.event("app_home_opened")
    async def home(event: dict, client: AsyncWebClient, request: AsyncBoltRequest) -> None:
        seen.append(event | {"headers": dict(request.headers)})
        await client.views_publish(
            user_id=event["user"], view={"type": "home", "blocks": [section("Welcome home")]}
        )

    return app


@pytest.fixture
async def bolt(fake: FakeSlack) -> AsyncIterator[tuple[SlackDriver, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    runner = web.AppRunner(build_bolt_app(fake, seen).web_app())
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    async with SlackDriver(f"http://127.0.0.1:{sock.getsockname()[1]}", SECRET, fake) as driver:
        yield driver, seen
    await runner.cleanup()


Bolt = tuple[SlackDriver, list[dict[str, Any]]]


async def test_driver_signature_verifies_with_slack_sdk(fake: FakeSlack) -> None:
    async with SlackDriver("http://127.0.0.1:1", SECRET, fake) as driver:
        body = "token=x&text=hello+world"
        headers = driver.sign(body)
        old = driver.sign(body, timestamp=int(time.time()) - 600)
    ts, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, ts, signature)
    assert not SignatureVerifier("other-secret").is_valid(body, ts, signature)
    assert not verifier.is_valid(body + "&x=1", ts, signature)
    assert not verifier.is_valid(body, old["X-Slack-Request-Timestamp"], old["X-Slack-Signature"])


async def test_unsigned_and_forged_requests_are_refused(bolt: Bolt) -> None:
    driver, seen = bolt
    body = "command=%2Fcse-backup&text=&user_id=U1&channel_id=C1"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    unsigned = await driver.raw(body, form)
    forged = await driver.raw(body, form | driver.sign(body.replace("U1", "U2")))
    signed = await driver.raw(body, form | driver.sign(body))
    assert (unsigned.status_code, forged.status_code, signed.status_code) == (401, 401, 200)
    assert len(seen) == 1


async def test_a_failed_ack_raises_unless_lenient(bolt: Bolt) -> None:
    driver, _ = bolt
    with pytest.raises(NotAcknowledged, match="HTTP 500") as err:
        await driver.command("U1", "C1", "boom")
    assert err.value.response.status_code == 500
    driver.strict = False
    assert (await driver.command("U1", "C1", "boom")).status_code == 500


async def test_command_payload_has_slacks_fields(bolt: Bolt) -> None:
    driver, seen = bolt
    response = await driver.command("U1", "C1", "help me")
    assert response.status_code == 200
    body = seen[0]
    assert body["command"] == "/cse-backup" and body["text"] == "help me"
    assert (body["user_id"], body["channel_id"], body["team_id"]) == ("U1", "C1", "T0FAKE")
    assert body["user_name"] == "u1"
    assert body["response_url"].startswith(driver.fake.root_url)
    assert body["trigger_id"] and body["api_app_id"] == "A0FAKE"


async def test_modal_submission_errors_then_update(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.command("U1", "C1", "modal")
    form = await driver.wait_for_view("U1")
    assert text_of(form["title"]) == "CSE backup policy"

    values = {"Engine": "prod", "schedule": "bad", "Retention": 7}
    errors = await driver.submit_view("U1", form, values)
    assert errors.json() == {
        "response_action": "errors",
        "errors": {"schedule": "not a cron expression"},
    }
    assert driver.current_view("U1") == form  # errors leave the modal as it was

    values = {
        "Engine": "staging",
        "Retention days": "7",
        "Quiet time": "02:30",
        "Options": ["Dry run"],
        "engine_search": "eng-7",
        "reason": "INC-42",
    }
    updated = await driver.submit_view("U1", form, values)
    assert updated.json()["response_action"] == "update"
    state = seen[-1]["view"]["state"]["values"]
    assert state["engine"]["engine"]["selected_option"]["value"] == "eng-2"
    assert state["schedule"]["cron"] == {"type": "plain_text_input", "value": "0 2 * * *"}
    assert state["reserve"]["days"] == {"type": "number_input", "value": "7"}
    assert state["when"]["time"]["selected_time"] == "02:30"
    assert [o["value"] for o in state["flags"]["flags"]["selected_options"]] == ["dry"]
    assert state["search"]["engine_search"]["selected_option"]["value"] == "eng-7"
    assert state["reason"]["reason"]["value"] == "INC-42"

    confirm = driver.current_view("U1")
    assert confirm is not None and confirm["id"] == form["id"]
    assert "Looks good" in text_of(confirm)
    done = await driver.submit_view("U1", confirm)  # as it stands: no inputs
    assert done.status_code == 200 and seen[-1]["view"]["callback_id"] == "confirm"
    assert driver.current_view("U1") is None  # an empty ack closes the modal


async def test_client_refuses_what_slack_would_not_send(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.command("U1", "C1", "modal")
    form = await driver.wait_for_view("U1")
    with pytest.raises(ClientRefused, match="Engine"):
        await driver.submit_view("U1", form, {"Retention days": "7"})
    with pytest.raises(ClientRefused, match="max_length"):
        too_long = {"Engine": "prod", "Retention days": "7", "Reason": "x" * 21}
        await driver.submit_view("U1", form, too_long)
    with pytest.raises(ClientRefused, match="whole numbers"):
        await driver.submit_view("U1", form, {"Engine": "prod", "Retention days": "1.5"})
    with pytest.raises(ClientRefused, match="no option"):
        await driver.submit_view("U1", form, {"Engine": "dev", "Retention days": "7"})
    with pytest.raises(KeyError):
        await driver.submit_view("U1", form, {"Colour": "blue"})
    with pytest.raises(ClientRefused, match="belongs to U1"):
        await driver.submit_view("U2", form, {"Engine": "prod", "Retention days": "7"})
    assert len(seen) == 1  # only the command reached the app


async def test_click_in_channel_message(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.command("U1", "C1", "")
    request = await driver.wait_for_message("Request r1", channel="C1")

    await driver.click("U2", "approve")
    body = seen[-1]
    assert body["type"] == "block_actions"
    assert body["user"]["id"] == "U2"
    assert body["actions"][0] | {"action_ts": ""} == {
        "type": "button",
        "action_id": "approve",
        "block_id": request.blocks[1]["block_id"],
        "text": plain("Approve"),
        "value": "r1",
        "action_ts": "",
    }
    assert body["container"] == {
        "type": "message",
        "message_ts": request.ts,
        "channel_id": "C1",
        "is_ephemeral": False,
    }
    assert body["message"]["ts"] == request.ts and body["channel"]["id"] == "C1"
    approved = await driver.wait_for_message("Approved by U2", channel="C1")
    assert approved.ts == request.ts and approved.blocks == []
    await driver.fake.async_wait_for("chat.postMessage", lambda c: "thread_ts" in c.args)
    assert [m.text for m in driver.fake.replies("C1", request.ts)] == ["thread reply"]


async def test_click_sees_the_message_as_it_is_now(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.command("U1", "C1", "")
    request = await driver.wait_for_message("Request r1", channel="C1")
    await driver.click("U2", "Approve", message=request)
    await driver.wait_for_message("Approved by U2", channel="C1")

    with pytest.raises(AssertionError, match="no button 'Approve'"):
        await driver.click("U3", "Approve", message=request)  # the buttons are gone
    await driver.click("U3", "Approve", message=request, stale=True)  # a client not caught up
    assert [b["user"]["id"] for b in seen if b.get("type") == "block_actions"] == ["U2", "U3"]


async def test_click_without_a_button_fails_clearly(bolt: Bolt) -> None:
    driver, _ = bolt
    with pytest.raises(AssertionError, match="no button 'Approve'"):
        await driver.click("U1", "Approve")


async def test_command_ack_shows_ephemeral_and_respond_replaces_it(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.command("U1", "C1", "confirm")
    shown = driver.find_ephemeral("U1", "Check this")
    assert shown.via == "ack"

    await driver.click("U1", "Request approval")
    body = seen[-1]
    assert body["container"]["is_ephemeral"] is True and "message" not in body
    replaced = await driver.wait_for_ephemeral("U1", "Requested")
    assert replaced.ts == shown.ts and [old.text for old in replaced.history] == ["Check this"]


async def test_respond_after_ack_lands_as_ephemeral(bolt: Bolt) -> None:
    driver, _ = bolt
    await driver.command("U1", "C1", "later")
    shown = await driver.wait_for_ephemeral("U1", "answered later", channel="C1")
    assert shown.via == "response_url"


async def test_ack_body_comes_before_later_responses(bolt: Bolt) -> None:
    driver, _ = bolt
    await driver.command("U1", "C1", "both")
    await driver.wait_for_ephemeral("U1", "Done")
    shown = driver.fake.ephemerals(user="U1")
    assert [(e.text, e.via) for e in shown] == [("Working on it", "ack"), ("Done", "response_url")]


async def test_button_in_modal_pushes_a_view(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.shortcut("U1", "open_form")
    form = await driver.wait_for_view("U1")
    assert seen[-1]["type"] == "shortcut"

    await driver.click("U1", "Add note", view=form)
    note = await driver.wait_for_view("U1")
    assert seen[-1]["container"] == {"type": "view", "view_id": form["id"]}
    assert seen[-1]["view"]["state"]["values"]["schedule"]["cron"]["value"] == "0 2 * * *"
    assert text_of(note["title"]) == "Note"
    assert [v["id"] for v in driver.fake.view_stack("U1")] == [form["id"], note["id"]]


async def test_select_in_modal_updates_it(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.command("U1", "C1", "modal")
    form = await driver.wait_for_view("U1")
    await driver.select("U1", "preset", "Hourly")
    action = seen[-1]["actions"][0]
    assert action["type"] == "static_select"
    assert action["selected_option"]["value"] == "0 * * * *"
    updated = await driver.wait_for_view("U1")
    assert updated["id"] == form["id"] and text_of(updated["title"]) == "Preset set"
    assert driver.fake.calls_to("views.update")[0].ok  # the hash from the payload was current


async def test_options_and_view_closed(bolt: Bolt) -> None:
    driver, seen = bolt
    await driver.command("U1", "C1", "modal")
    form = await driver.wait_for_view("U1")
    response = await driver.options("U1", form, "engine_search", "pro")
    assert seen[-1]["type"] == "block_suggestion" and seen[-1]["block_id"] == "search"
    assert response.json()["options"][0]["text"]["text"] == "pro-1"

    closed = await driver.close_view("U1", form)
    assert closed is not None and closed.status_code == 200
    assert seen[-1]["type"] == "view_closed"
    assert not driver.fake.is_open(form["id"])
    with pytest.raises(ClientRefused, match="not open"):
        await driver.submit_view("U1", form, {"Engine": "prod"})


async def test_app_home_opened_event_and_retries(bolt: Bolt) -> None:
    driver, seen = bolt
    response = await driver.app_home_opened("U1")
    assert response.status_code == 200
    await driver.fake.async_wait_for("views.publish")
    assert seen[-1]["type"] == "app_home_opened"
    assert "Welcome home" in text_of(driver.fake.home("U1"))

    event = {"type": "app_home_opened", "user": "U2", "channel": "D2", "tab": "home"}
    await driver.event(event, event_id="Ev1", retry_num=1)
    await driver.fake.async_wait_for("views.publish", lambda c: c.args["user_id"] == "U2")
    assert seen[-1]["headers"]["x-slack-retry-num"] == ["1"]


def test_state_values_keep_initial_values() -> None:
    state = state_values(FORM_BLOCKS, {"Engine": "eng-1", "Retention": 3})
    assert state["schedule"]["cron"]["value"] == "0 2 * * *"
    assert state["reason"]["reason"]["value"] is None
    assert state["flags"]["flags"]["selected_options"] == []
    assert "tools" not in state  # an untouched select outside input blocks has no state
    with pytest.raises(ValueError, match="ambiguous"):
        state_values(FORM_BLOCKS, {"e": "x"})


# ---------------------------------------------------------------------------------------------
# Socket Mode: the same driver, delivering through the fake's WebSocket
# ---------------------------------------------------------------------------------------------


async def test_app_level_token_is_only_for_connections(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.apps_connections_open(app_token=TOKEN)
    assert err.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=fake.url, token="xapp-test").auth_test()
    assert err.value.response["error"] == "not_allowed_token_type"
    opened = await client.apps_connections_open(app_token="xapp-test")
    assert opened["url"].startswith(f"ws://127.0.0.1:{fake.port}/")


@pytest.fixture
async def socket_bolt(fake: FakeSlack) -> AsyncIterator[Bolt]:
    seen: list[dict[str, Any]] = []
    handler = AsyncSocketModeHandler(build_bolt_app(fake, seen), "xapp-test")
    await handler.connect_async()
    await fake.async_wait_for_sockets(1)
    async with SlackDriver.over_socket(fake) as driver:
        yield driver, seen
    await handler.close_async()


async def test_socket_mode_command_modal_click_and_event(socket_bolt: Bolt) -> None:
    driver, seen = socket_bolt
    await driver.command("U1", "C1", "modal")
    form = await driver.wait_for_view("U1")
    updated = await driver.submit_view("U1", form, {"Engine": "prod", "Retention days": "7"})
    assert updated.json()["response_action"] == "update"
    assert seen[-1]["view"]["state"]["values"]["engine"]["engine"]["selected_option"]["value"]

    await driver.command("U1", "C1", "confirm")  # the ack body comes back over the socket
    assert driver.find_ephemeral("U1", "Check this").via == "ack"

    await driver.command("U1", "C1", "")
    await driver.wait_for_message("Request r1", channel="C1")
    await driver.click("U2", "Approve")
    assert (await driver.wait_for_message("Approved by U2", channel="C1")).blocks == []

    await driver.event({"type": "app_home_opened", "user": "U2", "channel": "D2", "tab": "home"})
    await driver.fake.async_wait_for("views.publish")
    assert seen[-1]["type"] == "app_home_opened"


async def test_socket_mode_failure_is_not_acknowledged(socket_bolt: Bolt) -> None:
    driver, _ = socket_bolt
    driver.fake.socket_ack_timeout = 0.2  # bolt sends no ack for a failed listener
    with pytest.raises(NotAcknowledged, match="HTTP 504"):
        await driver.command("U1", "C1", "boom")


async def test_socket_mode_reconnects_when_slack_asks(socket_bolt: Bolt) -> None:
    driver, _ = socket_bolt
    fake = driver.fake
    await fake.disconnect_sockets()
    assert await fake.async_wait_until(
        lambda: fake.socket_connections == 1 and len(fake.calls_to("apps.connections.open")) == 2
    )
    await driver.command("U1", "C1", "later")
    assert (await driver.wait_for_ephemeral("U1", "answered later")).via == "response_url"
