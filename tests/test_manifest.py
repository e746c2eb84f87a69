"""manifest.yml is a Slack app manifest an admin can paste as is, in Socket Mode or HTTP mode."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifest.yml"
SCHEMA_NAME = "slack-manifest.schema.json"
BOT_SCOPES = {"commands", "chat:write", "chat:write.public", "users:read", "usergroups:read"}
HTTP_URL_KEYS = ("url", "request_url", "message_menu_options_url")


def _schema_path() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared" / SCHEMA_NAME]
    if env := os.environ.get("SLACK_MANIFEST_SCHEMA"):
        candidates.append(Path(env))
    return next((path for path in candidates if path.is_file()), None)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    path = _schema_path()
    if path is None:
        pytest.skip(
            f"Slack manifest schema not found: neither ../shared/{SCHEMA_NAME} next to the "
            "project nor SLACK_MANIFEST_SCHEMA points to a file"
        )
    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return _load(MANIFEST.read_text(encoding="utf-8"))


def _errors(validator: jsonschema.protocols.Validator, data: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(data)
    ]


def _http_mode(text: str) -> str:
    """What the manifest's comments tell an admin to do for HTTP mode, done mechanically."""
    keys = "|".join(HTTP_URL_KEYS)
    text = re.sub(rf"(?m)^(\s*)# ({keys}): ", r"\1\2: ", text)
    text = text.replace("<your-host>", "bot.example.com")
    return re.sub(r"(?m)^(\s*socket_mode_enabled:) true\b", r"\1 false", text)


def test_manifest_is_valid_against_slacks_schema(
    validator: jsonschema.protocols.Validator, manifest: dict[str, Any]
) -> None:
    assert _errors(validator, manifest) == []


def test_schema_validation_is_not_vacuous(
    validator: jsonschema.protocols.Validator, manifest: dict[str, Any]
) -> None:
    broken = json.loads(json.dumps(manifest))
    broken["features"]["shortcuts"][0]["name"] = "x" * 25
    broken["settings"]["socket_mode"] = True
    errors = _errors(validator, broken)
    assert any("features/shortcuts/0/name" in e for e in errors), errors
    assert any("socket_mode" in e for e in errors), errors


def test_http_mode_as_the_comments_describe_is_valid(
    validator: jsonschema.protocols.Validator,
) -> None:
    manifest = _load(_http_mode(MANIFEST.read_text(encoding="utf-8")))
    assert _errors(validator, manifest) == []
    settings = manifest["settings"]
    urls = [
        manifest["features"]["slash_commands"][0]["url"],
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        settings["interactivity"]["message_menu_options_url"],
    ]
    assert urls == ["https://bot.example.com/slack/events"] * 4
    assert settings["socket_mode_enabled"] is False


def test_socket_mode_manifest_has_no_request_urls(manifest: dict[str, Any]) -> None:
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "url" not in manifest["features"]["slash_commands"][0]
    assert "request_url" not in manifest["settings"]["event_subscriptions"]
    assert "request_url" not in manifest["settings"]["interactivity"]
    assert "message_menu_options_url" not in manifest["settings"]["interactivity"]


def test_display_information(manifest: dict[str, Any]) -> None:
    info = manifest["display_information"]
    assert info["name"] == "CSE Backup Bot"
    assert 1 <= len(info["name"]) <= 35
    assert 1 <= len(info["description"]) <= 140
    # The schema states this pattern under the non-standard "regex" keyword, which
    # validators ignore, so it is checked here.
    assert re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", info["background_color"])


def test_bot_user_and_app_home(manifest: dict[str, Any]) -> None:
    features = manifest["features"]
    assert features["bot_user"]["display_name"] == "cse-backup"
    assert 1 <= len(features["bot_user"]["display_name"]) <= 80
    assert features["bot_user"]["always_online"] is True
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is False


def test_slash_command(manifest: dict[str, Any]) -> None:
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/cse-backup"]
    command = commands[0]
    assert command["command"].startswith("/")
    assert 2 <= len(command["command"]) <= 32
    assert re.fullmatch(r"/[a-z0-9_-]+", command["command"])
    assert 1 <= len(command["description"]) <= 2000
    assert 1 <= len(command["usage_hint"]) <= 1000
    for word in ("create", "preview", "list", "status", "cancel", "help"):
        assert word in command["usage_hint"]


def test_global_shortcut(manifest: dict[str, Any]) -> None:
    shortcuts = manifest["features"]["shortcuts"]
    shortcut = next(s for s in shortcuts if s["callback_id"] == "create_backup_policy")
    assert shortcut["type"] == "global"
    assert shortcut["name"] == "Create CSE backup policy"
    assert 1 <= len(shortcut["name"]) <= 24
    assert 1 <= len(shortcut["description"]) <= 150


def test_bot_scopes_are_exactly_the_needed_five(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}
    assert sorted(scopes["bot"]) == sorted(BOT_SCOPES)


def test_settings(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
