"""The `/cse-backup` text parser: quotes as typed on any keyboard, keys in any order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack.command_text import KEYS, parse_quick_args, split_command

FULL = {
    "engine": "prod",
    "schedule": "0 2 * * *",
    "reserve": "7",
    "max_files": "5",
    "reason": "INC-42",
}


@pytest.mark.parametrize(
    "text",
    [
        'engine=prod schedule="0 2 * * *" reserve=7 max_files=5 reason="INC-42"',
        "engine=prod schedule='0 2 * * *' reserve=7 max_files=5 reason='INC-42'",
        "engine=prod schedule=“0 2 * * *” reserve=7 max_files=5 reason=“INC-42”",
        "engine=prod schedule=‘0 2 * * *’ reserve=7 max_files=5 reason=‘INC-42’",
        'reason="INC-42" max_files=5 reserve=7 schedule="0 2 * * *" engine=prod',
        "engine=prod schedule=0 2 * * * reserve=7 max_files=5 reason=INC-42",
        '  engine=prod   schedule="0 2 * * *"\treserve=7 max_files=5 reason=INC-42 ',
        'ENGINE=prod Schedule="0 2 * * *" reserve=7 maxFiles=5 reason=INC-42',
    ],
)
def test_the_same_values_however_typed(text: str) -> None:
    args = parse_quick_args(text)
    assert args.problems == ()
    assert args.values == FULL


def test_slack_escaping_is_undone() -> None:
    args = parse_quick_args('reason="a &lt;b&gt; &amp; c" engine=prod')
    assert args.values["reason"] == "a <b> & c"


def test_unquoted_reason_runs_on_until_the_next_key() -> None:
    args = parse_quick_args("reason=INC 42 db down engine=prod")
    assert args.values == {"reason": "INC 42 db down", "engine": "prod"}


def test_unknown_keys_are_named() -> None:
    args = parse_quick_args('engine=prod retention=7 colour="blue"')
    assert args.values == {"engine": "prod"}
    assert len(args.problems) == 1
    assert "`retention`" in args.problems[0] and "`colour`" in args.problems[0]
    assert "Unknown keys" in args.problems[0]


def test_stray_words_and_repeats_and_open_quotes_are_problems() -> None:
    assert "not a `key=value`" in parse_quick_args("prod engine=x").problems[0]
    assert "more than once" in parse_quick_args("engine=a engine=b").problems[0]
    assert "never closes" in parse_quick_args('schedule="0 2 * * *').problems[0]


def test_empty_text() -> None:
    assert parse_quick_args("").empty
    assert parse_quick_args("   ").empty


def test_split_command() -> None:
    command = split_command("  Create  engine=prod ")
    assert (command.verb, command.rest) == ("create", "engine=prod")
    assert split_command("").verb == ""
    assert split_command("preview “0 2 * * *”").rest == '"0 2 * * *"'


@given(st.text(max_size=300))
def test_never_raises(text: str) -> None:
    args = parse_quick_args(text)
    assert set(args.values) <= set(KEYS)
    assert all(isinstance(p, str) and p for p in args.problems)
