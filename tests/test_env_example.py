""".env.example documents every setting the bot reads, and what it shows is true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import Settings, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
ASSIGNMENT = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
# Fields whose default is "unset": the commented value is an example, not the default.
UNSET: tuple[object, ...] = (None, ())


def _entries() -> list[tuple[int, bool, str, str]]:
    """(line index, commented, NAME, value) for every `NAME=` or `# NAME=` line."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    entries = []
    for index, line in enumerate(lines):
        if match := ASSIGNMENT.match(line.strip()):
            entries.append((index, bool(match["commented"]), match["name"], match["value"].strip()))
    return entries


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment this test runs in."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_every_setting_appears_and_nothing_else() -> None:
    names = [name for _, _, name, _ in _entries()]
    assert len(names) == len(set(names)), "a setting appears twice"
    fields = {name.upper() for name in Settings.model_fields}
    assert set(names) - fields == set(), "not a setting of bot.settings.Settings"
    assert fields - set(names) == set(), "missing from .env.example"


def test_every_setting_has_a_one_line_comment_above_it() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, _, name, _ in _entries():
        above = lines[index - 1].strip() if index else ""
        assert above.startswith("# ") and not ASSIGNMENT.match(above), name
        assert len(above) > len("# ") + 3, f"{name}: the comment says nothing"


def test_tokens_are_placeholders() -> None:
    secrets = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    values = {name: value for _, _, name, value in _entries()}
    assert secrets <= values.keys()
    for name in secrets:
        assert "your-" in values[name], f"{name} should hold an obvious placeholder"


def test_the_file_as_shipped_loads(clean_env: None) -> None:
    settings = load_settings(_env_file=str(ENV_EXAMPLE))
    settings.require_for_run()
    assert settings.socket_mode
    active = {name for _, commented, name, _ in _entries() if not commented}
    assert active == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "CSE_ENDPOINT", "CSE_AUTH_TOKEN"}


def test_commented_values_are_the_defaults_or_valid_examples(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    commented = {name: value for _, is_commented, name, value in _entries() if is_commented}
    for name, value in commented.items():
        monkeypatch.setenv(name, value)
    # Raises, naming the variable, if any example is not a valid value.
    uncommented = load_settings(_env_file=None)
    for name in commented:
        field = name.lower()
        default = Settings.model_fields[field].default
        if default in UNSET:
            assert getattr(uncommented, field) not in UNSET, f"{name}: the example is empty"
        else:
            assert getattr(uncommented, field) == default, f"{name}: not the default"
