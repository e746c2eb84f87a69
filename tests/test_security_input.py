"""Bad input (CONTRACT §4): whatever is typed into the slash command or sent in a modal
submission (any unicode, huge text, control characters, quotes, Slack syntax) the bot answers
200 with a clear message, never an error reference and never a 5xx; Slack accepts every message
and view it sends; typed text can never mention, ping or link in any `mrkdwn` surface; lengths
are capped with a message that says so.

Hypothesis drives the running app (real HTTP, real Redis, FakeSlack) on an event loop of its own
in a background thread, so each example is one more request to the same live bot.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.requests import State
from tests.fakes.slack_api import FakeSlack
from tests.slack_harness import (
    ALICE,
    APPROVALS,
    BOB,
    CAROL,
    CHANNEL,
    MALLORY,
    PROD_ID,
    STAGING_ID,
    Harness,
    running,
)

WAIT = 20.0  # seconds: generous, the machine may be busy with other work

T = TypeVar("T")

INJECTIONS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0EVIL99>",
    "<@U0EVIL99|boss>",
    "<!subteam^S0EVIL>",
    "<!subteam^S0EVIL|@ops>",
    "<https://evil.example|click me>",
    "<https://evil.example>",
    "<mailto:x@evil.example|mail>",
    "<#C0EVIL99>",
    "<!date^1^{date}|x>",
    "&lt;!channel&gt;",
    "&amp;",
    "*bold*",
    "`tick`",
    "```",
    "> quote",
]
PIECES = [
    *INJECTIONS,
    '"',
    "'",
    "“",
    "”",
    "‘",
    "’",
    "=",
    " ",
    "\n",
    "\t",
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\u200b",
    "\ufeff",
    "😀",
    "engine=",
    "schedule=",
    "reserve=",
    "max_files=",
    "reason=",
    "engine=prod ",
    'schedule="0 2 * * *" ',
    "reserve=7 ",
    "max_files=5 ",
    "0 2 * * *",
    "@daily",
    "*/5",
    "prod",
    "staging",
    PROD_ID,
]
# Text without lone surrogates (they cannot travel as UTF-8, so Slack never sends them).
UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
TYPED = st.lists(st.one_of(st.sampled_from(PIECES), UNICODE), max_size=12).map("".join)
HUGE = st.builds(lambda piece, n: piece * n, st.sampled_from(PIECES), st.integers(600, 2500))
ANY_TEXT = st.one_of(TYPED, TYPED, TYPED, HUGE)
VERBS = st.sampled_from(["create ", "new ", "preview ", "status ", "cancel ", "list ", "", "help "])

# Every `<` the bot may put into mrkdwn: its own mentions of known users, channels and groups,
# and dates. Anything else starting with `<` came from typed text unescaped.
KNOWN = r"(?:U0ALICE01|U0BOB0002|U0CAROL03|U0MALLORY|U0BOT)"
ALLOWED_ANGLE = re.compile(
    rf"<(?:@{KNOWN}|#(?:C0BACKUPS|C0APPROVE)|!subteam\^S0OPSTEAM|!date\^\d+\^[^|<>]*\|[^<>]*)>"
)
BAD_WORDS = ("Something went wrong", "reference `")


def _mrkdwn_texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from _mrkdwn_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _mrkdwn_texts(item)


def _surfaces(fake: FakeSlack) -> Iterator[str]:
    """Every text Slack renders as mrkdwn: message texts and blocks, ephemerals, views."""
    for message in fake.messages():
        yield message.text
        yield from _mrkdwn_texts(message.blocks)
    for ephemeral in fake.ephemerals():
        yield ephemeral.text
        yield from _mrkdwn_texts(ephemeral.blocks)
    for view in fake.views_by_id.values():
        yield from _mrkdwn_texts(view.get("blocks"))


def assert_nothing_pings(fake: FakeSlack) -> None:
    for text in _surfaces(fake):
        stray = ALLOWED_ANGLE.sub("", text)
        assert "<" not in stray, f"typed text reached mrkdwn unescaped: {text[:300]!r}"


def assert_slack_accepted_everything(fake: FakeSlack, since: int) -> None:
    refused = [
        (c.method, c.response.get("error"), c.response.get("errors"))
        for c in fake.calls[since:]
        if not c.ok and c.method != "auth.test"
    ]
    assert refused == [], refused


class LiveBot:
    """The running app (`tests.slack_harness.running`) on an event loop in its own thread."""

    def __init__(self, **overrides: Any) -> None:
        self._overrides = overrides
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._context: Any = None
        self.h: Harness

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> LiveBot:
        self._thread.start()
        self._context = running(**self._overrides)
        self.h = self.run(self._context.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._context.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveBot]:
    with LiveBot() as bot:
        yield bot


@pytest.fixture(scope="module")
def live_typed_engines() -> Iterator[LiveBot]:
    """No configured engines and no project: the engine is typed by hand."""
    with LiveBot(cse_engines=()) as bot:
        yield bot


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def _answered(h: Harness, user: str, before: int, since: int) -> str:
    """Wait for the bot's answer to `user` (an ephemeral or a modal); return what it says."""

    def answer() -> str | None:
        shown = h.fake.ephemerals(user=user)
        if len(shown) > before:
            return "\n".join(e.all_text for e in shown[before:])
        opened = [c for c in h.fake.calls[since:] if c.method == "views.open" and c.ok]
        if opened:
            return json.dumps(opened[-1].args.get("view"))
        return None

    found = await h.fake.async_wait_until(answer, timeout=10)
    assert found, "the bot never answered"
    return found


@FUZZ
@given(verb=VERBS, text=ANY_TEXT)
def test_any_command_text_gets_a_clear_answer(live: LiveBot, verb: str, text: str) -> None:
    h = live.h

    async def attempt() -> None:
        before = len(h.fake.ephemerals(user=MALLORY))
        since = h.fake.mark()
        response = await h.driver.command(MALLORY, CHANNEL, verb + text)
        assert response.status_code == 200
        said = await _answered(h, MALLORY, before, since)
        for words in BAD_WORDS:
            assert words not in said, said[:500]
        assert_slack_accepted_everything(h.fake, since)

    live.run(attempt())
    assert_nothing_pings(h.fake)


def _form_state(engine: str | None, values: dict[str, str | None]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if engine is not None:
        state["engine"] = {
            "engine": {
                "type": "static_select",
                "selected_option": {"value": engine, "text": {"type": "plain_text", "text": "x"}},
            }
        }
    for block_id, value in values.items():
        state[block_id] = {block_id: {"type": "plain_text_input", "value": value}}
    return {"values": state}


OPTIONAL_TEXT = st.one_of(st.none(), ANY_TEXT)
ENGINE_VALUE = st.one_of(st.none(), st.sampled_from([PROD_ID, STAGING_ID, "prod"]), ANY_TEXT)


def _submit_form(live: LiveBot, user: str, state: dict[str, Any]) -> dict[str, Any]:
    """Open the form, then submit it the way a client that checks nothing could."""
    h = live.h

    async def attempt() -> dict[str, Any]:
        await h.driver.command(user, CHANNEL, "create")
        form = await h.driver.wait_for_view(user, timeout=WAIT)
        since = h.fake.mark()
        payload = {
            **h.driver._base("view_submission", user),
            "trigger_id": h.fake.issue_trigger_id(user),
            "view": {**form, "state": state},
            "response_urls": [],
        }
        response = await h.driver.send_interaction(payload)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        if body.get("response_action") in ("update", "push"):
            h.fake.apply_view_response(form["id"], body, form["hash"])  # Slack must accept it
        await h.driver.close_view(user, h.driver.current_view(user) or form)
        assert_slack_accepted_everything(h.fake, since)
        return body

    return live.run(attempt())


def _check_form_answer(body: dict[str, Any]) -> None:
    action = body.get("response_action")
    assert action in ("errors", "update"), body
    if action == "errors":
        errors = body["errors"]
        assert errors and all(isinstance(m, str) and m.strip() for m in errors.values())
    shown = json.dumps(body)
    for words in BAD_WORDS:
        assert words not in shown, shown[:500]


@FUZZ
@given(
    engine=ENGINE_VALUE,
    schedule=OPTIONAL_TEXT,
    reserve=OPTIONAL_TEXT,
    max_files=OPTIONAL_TEXT,
    reason=OPTIONAL_TEXT,
)
def test_any_form_submission_gets_field_errors_or_the_confirmation(
    live: LiveBot,
    engine: str | None,
    schedule: str | None,
    reserve: str | None,
    max_files: str | None,
    reason: str | None,
) -> None:
    state = _form_state(
        engine,
        {"schedule": schedule, "reserve": reserve, "max_files": max_files, "reason": reason},
    )
    _check_form_answer(_submit_form(live, CAROL, state))
    assert_nothing_pings(live.h.fake)


@settings(FUZZ, max_examples=25)
@given(engine=ANY_TEXT, reason=OPTIONAL_TEXT)
def test_typed_engine_ids_are_checked_and_escaped(
    live_typed_engines: LiveBot, engine: str, reason: str | None
) -> None:
    state = {
        "values": {
            "engine": {"engine": {"type": "plain_text_input", "value": engine}},
            "schedule": {"schedule": {"type": "plain_text_input", "value": "0 2 * * *"}},
            "reason": {"reason": {"type": "plain_text_input", "value": reason}},
        }
    }
    _check_form_answer(_submit_form(live_typed_engines, CAROL, state))
    assert_nothing_pings(live_typed_engines.h.fake)


@settings(FUZZ, max_examples=20)
@given(
    state=st.one_of(
        st.none(),
        st.just({}),
        st.just({"values": None}),
        st.just({"values": []}),
        st.just({"values": {"engine": "prod"}}),
        st.just({"values": {"engine": {"engine": None}}}),
        st.just({"values": {"engine": {"engine": {"selected_option": "prod"}}}}),
        st.just({"values": {"schedule": {"schedule": {"value": ["0 2 * * *"]}}}}),
        st.just({"values": {"reserve": {"reserve": {"value": 7}}}}),
        st.just({"values": [1]}),
        st.just({"values": "engine=prod"}),
        st.just("state"),
        st.just({"values": {"schedule_mode": {"m": {"selected_option": {"value": {}}}}}}),
        st.just({"values": {"schedule_mode": {"m": {"selected_option": {"value": ["cron"]}}}}}),
        st.just({"values": {"schedule_days": {"d": {"selected_options": [{"value": {}}]}}}}),
        st.just({"values": {"engine": {"e": {"selected_option": {"value": "p", "text": 3}}}}}),
        st.dictionaries(
            st.text(max_size=10),
            st.recursive(
                st.none() | st.text(max_size=5),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
            max_size=4,
        ),
    )
)
def test_malformed_form_state_is_answered_not_crashed(live: LiveBot, state: Any) -> None:
    body = _submit_form(live, BOB, state)
    _check_form_answer(body)


# --- lengths are capped, with a message ---------------------------------------------------------


def test_lengths_are_capped_with_a_message(live: LiveBot) -> None:
    h = live.h

    async def attempt() -> None:
        for text, words in (
            ("create reason=" + "x" * 2100, "longer than 2000 characters"),
            ('create engine=prod schedule="0 2 * * *" reason="' + "y" * 600 + '"', "500"),
            ('create engine=prod schedule="' + "1," * 150 + '1 2 * * *"', "200 characters"),
        ):
            before = len(h.fake.ephemerals(user=ALICE))
            since = h.fake.mark()
            await h.driver.command(ALICE, CHANNEL, text)
            said = await _answered(h, ALICE, before, since)
            assert words in said, said[:300]

    live.run(attempt())
    body = _submit_form(
        live, ALICE, _form_state(PROD_ID, {"schedule": "0 2 * * *", "reason": "z" * 5000})
    )
    assert body["response_action"] == "errors" and "500" in body["errors"]["reason"]


async def test_reject_and_break_glass_reasons_are_capped_and_escaped() -> None:
    async with running(break_glass_users=(ALICE,)) as h:
        request_id = await h.create_request()
        request = await h.store.get(request_id)
        assert request is not None and request.message_ts
        approval = h.fake.message(CHANNEL, request.message_ts)

        async def submit(user: str, view: dict[str, Any], reason: str) -> dict[str, Any]:
            view["state"] = {
                "values": {
                    "decision_reason": {"reason": {"type": "plain_text_input", "value": reason}}
                }
            }
            payload = {**h.driver._base("view_submission", user), "view": view, "response_urls": []}
            response = await h.driver.send_interaction(payload)
            assert response.status_code == 200
            return response.json() if response.content.strip() else {}

        await h.driver.click(BOB, "Reject", message=approval)
        view = await h.driver.wait_for_view(BOB, timeout=WAIT)
        too_long = await submit(BOB, view, "<!channel> " * 100)
        assert too_long.get("response_action") == "errors"
        assert "500" in json.dumps(too_long)
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]

        await h.driver.click(ALICE, "Approve", message=approval)
        glass = await h.driver.wait_for_view(ALICE, timeout=WAIT)
        too_long = await submit(ALICE, glass, "x" * 501)
        assert too_long.get("response_action") == "errors"
        assert (await h.store.get(request_id)).state is State.PENDING  # type: ignore[union-attr]

        await submit(ALICE, glass, "<!channel> <@U0EVIL99> <https://evil.example|y> & go")
        await h.wait_stored(request_id, lambda r: r.state is State.CREATED, timeout=WAIT)
        await h.driver.wait_for_message("Backup policy created", channel=CHANNEL, timeout=WAIT)
        assert_nothing_pings(h.fake)
        shown = json.dumps([m.blocks for m in h.fake.messages()])
        assert "&lt;!channel&gt;" in shown


async def test_injected_syntax_is_escaped_on_every_surface() -> None:
    """One request carrying every injection through every message the bot builds from it:
    confirmation, approval, status, list, reject reason, App Home, the approval channel's and
    the requester channel's status messages."""
    injected = " ".join(INJECTIONS)
    async with running(approval_channel=APPROVALS) as h:
        text = (
            'create engine=prod schedule="0 2 * * *" reserve=7 max_files=5 '
            f'reason="{injected.replace(chr(34), "")}"'
        )
        request_id = await h.create_request(text)
        await h.driver.command(BOB, CHANNEL, "list")
        await h.driver.wait_for_ephemeral(BOB, request_id, timeout=WAIT)
        await h.driver.command(BOB, CHANNEL, f"status {request_id}")
        await h.driver.wait_for_ephemeral(BOB, "History", timeout=WAIT)
        await h.driver.app_home_opened(BOB)
        await h.fake.async_wait_for("views.publish", timeout=WAIT)
        await h.driver.click(BOB, "Reject", channel=APPROVALS)
        view = await h.driver.wait_for_view(BOB, timeout=WAIT)
        await h.driver.submit_view(BOB, view, {"Reason": injected[:400]})
        await h.wait_stored(request_id, lambda r: r.state is State.REJECTED, timeout=WAIT)
        await h.fake.async_wait_for("chat.update", timeout=WAIT)
        await h.driver.command(ALICE, CHANNEL, f"status {request_id}")
        await h.driver.wait_for_ephemeral(ALICE, "History", timeout=WAIT)
        assert_nothing_pings(h.fake)
        everything = json.dumps([m.blocks for m in h.fake.messages()]) + json.dumps(
            [e.blocks for e in h.fake.ephemerals()]
        )
        assert "&lt;!channel&gt;" in everything and "&lt;@U0EVIL99&gt;" in everything
