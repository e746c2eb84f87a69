"""Settings: CONTRACT §3 names and defaults, durations, id lists, one clear line per bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, format_duration, load_settings, parse_duration


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    yield


def test_defaults_are_the_contract_defaults() -> None:
    s = load_settings()
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.port == 3000
    assert s.redis_url is None
    assert s.redis_prefix == "cse-backup"
    assert s.cse_enterprise_project_id == "0"
    assert s.cse_schedule_timezone == "UTC"
    assert s.approval_ttl == 4 * 3600
    assert s.required_approvals == 1
    assert s.approval_reminders == (30 * 60, 2 * 3600)
    assert s.require_reason is False
    assert s.approvers == () and s.requesters == () and s.allowed_channels == ()
    assert s.log_level == "INFO" and s.log_format == "json"
    assert s.cse_connect_timeout == 5 and s.cse_timeout == 30
    assert not s.socket_mode


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("4h", 14400),
        ("1d", 86400),
        ("1h30m", 5400),
        ("45", 45),
        (" 2H ", 7200),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "4 hours", "h", "-5m", "1.5h", "4h-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (90, 1800, 14400, 86400, 5400, 3661):
        assert parse_duration(format_duration(seconds)) == seconds


def test_lists_and_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVERS", "U012AB3CD, S0614TZR7,W0456EFGH")
    monkeypatch.setenv("ALLOWED_CHANNELS", "C0123ABCD")
    monkeypatch.setenv("CSE_ENGINES", "prod=6f3c1e2a-0b1d-4c5e-9f00-123456789abc,staging=abc123")
    monkeypatch.setenv("APPROVAL_REMINDERS", "2s,4s")
    monkeypatch.setenv("APPROVAL_TTL", "90s")
    monkeypatch.setenv("REQUIRE_REASON", "true")
    s = load_settings()
    assert s.approvers == ("U012AB3CD", "S0614TZR7", "W0456EFGH")
    assert s.allowed_channels == ("C0123ABCD",)
    assert s.engines == {"prod": "6f3c1e2a-0b1d-4c5e-9f00-123456789abc", "staging": "abc123"}
    assert s.approval_reminders == (2, 4)
    assert s.approval_ttl == 90
    assert s.require_reason is True


def test_reminders_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVAL_REMINDERS", "off")
    assert load_settings().approval_reminders == ()


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVERS", "")
    monkeypatch.setenv("REDIS_URL", "")
    s = load_settings()
    assert s.approvers == () and s.redis_url is None


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("APPROVAL_TTL", "four hours", "APPROVAL_TTL"),
        ("APPROVERS", "alice", "APPROVERS"),
        ("ALLOWED_CHANNELS", "#general", "ALLOWED_CHANNELS"),
        ("CSE_ENGINES", "prod", "CSE_ENGINES"),
        ("CSE_SCHEDULE_TIMEZONE", "Mars/Olympus", "CSE_SCHEDULE_TIMEZONE"),
        ("PORT", "70000", "PORT"),
        ("REQUIRED_APPROVALS", "0", "REQUIRED_APPROVALS"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL"),
        ("CSE_ENDPOINT", "cse.example", "CSE_ENDPOINT"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
        ("BREAK_GLASS_USERS", "S0614TZR7", "BREAK_GLASS_USERS"),
        ("APPROVAL_CHANNEL", "approvals", "APPROVAL_CHANNEL"),
    ],
)
def test_bad_value_names_variable_and_example(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(fragment)
    assert "e.g." in message or "looks like" in message
    assert "\n" not in message


def test_iam_settings_must_be_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAM_ENDPOINT", "https://iam.example.com")
    monkeypatch.setenv("IAM_DOMAIN", "acme")
    with pytest.raises(ConfigError, match="IAM_USER"):
        load_settings()


def test_run_requires_tokens_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        load_settings().require_for_run()
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        load_settings().require_for_run()
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")  # Socket Mode needs no signing secret
    with pytest.raises(ConfigError, match="CSE_ENDPOINT"):
        load_settings().require_for_run()
    monkeypatch.setenv("CSE_ENDPOINT", "https://cse.example.com")
    with pytest.raises(ConfigError, match="CSE_AUTH_TOKEN"):
        load_settings().require_for_run()
    monkeypatch.setenv("CSE_AUTH_TOKEN", "tok")
    load_settings().require_for_run()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("APPROVAL_TTL=30m\nSLACK_BOT_TOKEN=xoxb-from-file\n")
    s = load_settings()
    assert s.approval_ttl == 1800
    assert s.slack_bot_token is not None
    assert s.slack_bot_token.get_secret_value() == "xoxb-from-file"


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("IAM_ENDPOINT", "https://iam.example.com")
    monkeypatch.setenv("IAM_DOMAIN", "acme")
    monkeypatch.setenv("IAM_USER", "bot")
    monkeypatch.setenv("IAM_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("IAM_PROJECT_ID", "p1")
    text = repr(load_settings()) + str(load_settings())
    assert "xoxb-very-secret" not in text and "hunter2-secret" not in text


def test_run_with_a_bad_setting_exits_with_one_line(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {f.upper() for f in Settings.model_fields}
    }
    env.update({"APPROVAL_TTL": "soon", "SLACK_BOT_TOKEN": "xoxb-1"})
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "APPROVAL_TTL" in lines[0] and "4h" in lines[0]
