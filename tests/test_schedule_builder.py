"""The schedule builder: days and a time of day to a cron expression (tables and properties)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.schedule import ScheduleError, next_runs, parse_schedule
from bot.core.schedule_builder import days_and_time, parse_time, weekly_expression


@pytest.mark.parametrize(
    ("days", "time", "expected"),
    [
        (["1", "2", "3", "4", "5"], "02:00", "0 2 * * 1-5"),
        (["1", "3", "5"], "01:30", "30 1 * * 1,3,5"),
        (["6", "0"], "23:05", "5 23 * * 0,6"),
        (["0", "1", "2", "3", "4", "5", "6"], "00:00", "0 0 * * *"),
        (["7"], "12:00", "0 12 * * 0"),  # 7 is Sunday too
        (["1", "2"], "9:15", "15 9 * * 1,2"),  # two days stay a list
        (["0", "1", "2", "4", "5", "6"], "02:00", "0 2 * * 0-2,4-6"),
        ([1, 2, 3], "02:00", "0 2 * * 1-3"),
    ],
)
def test_days_and_time_make_these_expressions(days: list[str], time: str, expected: str) -> None:
    assert weekly_expression(days, time) == expected
    assert parse_schedule(expected).expression == expected  # already in normal form


@pytest.mark.parametrize(
    ("days", "time", "why"),
    [
        ([], "02:00", "at least one day"),
        (["1"], "24:00", "not a time"),
        (["1"], "2pm", "not a time"),
        (["1"], "", "not a time"),
        (["8"], "02:00", "not a day"),
        (["mon"], "02:00", "not a day"),
    ],
)
def test_what_the_builder_refuses(days: list[str], time: str, why: str) -> None:
    with pytest.raises(ScheduleError, match=why):
        weekly_expression(days, time)


def test_parse_time() -> None:
    assert parse_time("07:05") == (7, 5)
    assert parse_time(" 23:59 ") == (23, 59)


@given(
    days=st.sets(st.integers(min_value=0, max_value=6), min_size=1),
    hour=st.integers(min_value=0, max_value=23),
    minute=st.integers(min_value=0, max_value=59),
)
def test_every_run_is_on_a_chosen_day_at_the_chosen_time(
    days: set[int], hour: int, minute: int
) -> None:
    expression = weekly_expression(sorted(days), f"{hour:02d}:{minute:02d}")
    runs = next_runs(parse_schedule(expression), datetime(2025, 1, 1, tzinfo=UTC), 14, UTC)
    assert len(runs) == 14
    # isoweekday: Monday 1 ... Sunday 7; cron: Sunday 0.
    assert {run.isoweekday() % 7 for run in runs} == days
    assert all((run.hour, run.minute) == (hour, minute) for run in runs)
    assert days_and_time(expression) == (frozenset(days), f"{hour:02d}:{minute:02d}")


def test_days_and_time_of_expressions_the_builder_cannot_make() -> None:
    assert days_and_time("0 2 1 * *") is None
    assert days_and_time("*/5 2 * * *") is None
    assert days_and_time("0 2 * * MON") is None
