"""The schedule builder: weekdays and a time of day, as the CSE console asks for them, to a
5-field cron expression. Pure code, no Slack.

`weekly_expression({1, 2, 3, 4, 5}, "02:00")` is `0 2 * * 1-5`. Days are cron's day-of-week
numbers (0 = Sunday ... 6 = Saturday); runs of three or more days become a range, every day
becomes `*`, so the expression reads as a person would write it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.core.schedule import ScheduleError

# The console's order: Monday first, Sunday last. (cron number, short name)
WEEK: tuple[tuple[int, str], ...] = (
    (1, "Mon"),
    (2, "Tue"),
    (3, "Wed"),
    (4, "Thu"),
    (5, "Fri"),
    (6, "Sat"),
    (0, "Sun"),
)
_TIME = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse_time(text: str) -> tuple[int, int]:
    """`HH:MM` (a timepicker's value) to (hour, minute). Raises ScheduleError."""
    match = _TIME.match(text or "")
    if match is None:
        raise ScheduleError(f"`{(text or '')[:10]}` is not a time of day; pick one as HH:MM.")
    return int(match.group(1)), int(match.group(2))


def parse_days(values: Iterable[str | int]) -> frozenset[int]:
    """Day-of-week numbers (0-6; 7 is Sunday too) from checkbox values. Raises ScheduleError."""
    days: set[int] = set()
    for value in values:
        text = str(value).strip()
        if not text.isdigit() or not 0 <= int(text) <= 7:
            raise ScheduleError(f"`{text[:10]}` is not a day of the week.")
        days.add(int(text) % 7)
    return frozenset(days)


def _day_field(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "*"
    ordered = sorted(days)
    parts: list[str] = []
    start = previous = ordered[0]
    for day in [*ordered[1:], None]:
        if day is not None and day == previous + 1:
            previous = day
            continue
        if previous - start >= 2:
            parts.append(f"{start}-{previous}")
        else:
            parts.extend(str(d) for d in range(start, previous + 1))
        if day is not None:
            start = previous = day
    return ",".join(parts)


def weekly_expression(days: Iterable[str | int], time: str) -> str:
    """The cron expression that runs at `time` (HH:MM) on `days`. Raises ScheduleError."""
    chosen = parse_days(days)
    if not chosen:
        raise ScheduleError("Tick at least one day of the week.")
    hour, minute = parse_time(time)
    return f"{minute} {hour} * * {_day_field(chosen)}"


def days_and_time(expression: str) -> tuple[frozenset[int], str] | None:
    """The builder's days and time for an expression it could have made, else None (so a
    prefilled form can show it in the builder too)."""
    fields = expression.split()
    if len(fields) != 5 or fields[2:4] != ["*", "*"]:
        return None
    minute, hour, _, _, dow = fields
    if not (minute.isdigit() and hour.isdigit()) or int(minute) > 59 or int(hour) > 23:
        return None
    days: set[int] = set()
    for part in dow.split(","):
        if part == "*":
            days.update(range(7))
        elif re.fullmatch(r"\d-\d", part) and int(part[0]) <= int(part[2]) <= 7:
            days.update(d % 7 for d in range(int(part[0]), int(part[2]) + 1))
        elif part.isdigit() and int(part) <= 7:
            days.add(int(part) % 7)
        else:
            return None
    return frozenset(days), f"{int(hour):02d}:{int(minute):02d}"
