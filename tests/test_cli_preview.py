"""`cse-backup-bot preview` as a user runs it: a real process, real arguments, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CSE_", "SLACK_", "IAM_"))}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd,
        timeout=60,
    )


def test_json_output_is_exactly_the_contract_shape(tmp_path: Path) -> None:
    done = run_cli(
        "preview",
        "0 2 * * *",
        "--json",
        "--count",
        "3",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-03-27T12:00:00+01:00",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"expression", "description", "timezone", "runs", "warnings"}
    assert data["expression"] == "0 2 * * *"
    assert data["timezone"] == "Europe/Berlin"
    assert data["runs"] == [
        "2026-03-28T02:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
    ]
    assert "02:00" in data["description"]
    assert data["warnings"] == []


def test_default_zone_comes_from_the_setting_not_the_machine(tmp_path: Path) -> None:
    done = run_cli(
        "preview",
        "0 2 * * *",
        "--json",
        "--count",
        "1",
        "--after",
        "2026-12-03T00:00:00Z",
        env={"CSE_SCHEDULE_TIMEZONE": "Asia/Singapore", "TZ": "America/Denver"},
        cwd=tmp_path,
    )
    data = json.loads(done.stdout)
    assert data["timezone"] == "Asia/Singapore"
    assert data["runs"] == ["2026-12-04T02:00:00+08:00"]


def test_default_zone_is_utc_even_when_the_machine_has_another(tmp_path: Path) -> None:
    done = run_cli(
        "preview",
        "0 2 * * *",
        "--json",
        "--count",
        "1",
        "--after",
        "2026-12-03T00:00:00Z",
        env={"TZ": "Asia/Tokyo"},
        cwd=tmp_path,
    )
    assert json.loads(done.stdout)["runs"] == ["2026-12-03T02:00:00+00:00"]


def test_env_file_in_working_directory_sets_the_zone(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CSE_SCHEDULE_TIMEZONE=Europe/Berlin\n")
    done = run_cli(
        "preview",
        "@daily",
        "--json",
        "--count",
        "1",
        "--after",
        "2026-12-03T00:00:00Z",
        cwd=tmp_path,
    )
    assert json.loads(done.stdout)["timezone"] == "Europe/Berlin"


def test_naive_after_is_read_in_the_schedule_zone(tmp_path: Path) -> None:
    done = run_cli(
        "preview",
        "0 2 * * *",
        "--json",
        "--count",
        "1",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-12-03T01:59:00",
        cwd=tmp_path,
    )
    assert json.loads(done.stdout)["runs"] == ["2026-12-03T02:00:00+01:00"]


def test_human_table_shows_weekday_offset_and_warnings(tmp_path: Path) -> None:
    done = run_cli(
        "preview", "* 2 * * *", "--count", "2", "--after", "2026-12-03T00:00:00Z", cwd=tmp_path
    )
    assert done.returncode == 0
    out = done.stdout
    assert "Expression   * 2 * * *" in out
    assert "Thu 2026-12-03 02:00 UTC+00:00" in out
    assert "did you mean `0 2 * * *`" in out


def test_expression_given_as_separate_words(tmp_path: Path) -> None:
    done = run_cli("preview", "0", "2", "*", "*", "*", "--json", "--count", "1", cwd=tmp_path)
    assert json.loads(done.stdout)["expression"] == "0 2 * * *"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["0 0 30 2 *"], "never runs"),
        (["0 0 L * *"], "Quartz"),
        (["0 2 * * *", "--tz", "Mars/Olympus"], "not an IANA time zone"),
        (["0 2 * * *", "--after", "yesterday"], "not an ISO 8601"),
        (["0 2 * * *", "--count", "0"], "--count"),
        (["0 2 * * *", "--count", "many"], "invalid int"),
    ],
)
def test_invalid_input_is_one_line_and_exit_2(
    args: list[str], fragment: str, tmp_path: Path
) -> None:
    done = run_cli("preview", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0]


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "cse-backup-bot"
    assert script.exists()
    done = subprocess.run(
        [str(script), "preview", "@hourly", "--json", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(done.stdout)["expression"] == "0 * * * *"
