"""The schedule engine: parse, normalise, describe, compute next runs and lint a cron expression.

Pure code, no Slack and no I/O. The semantics are Vixie/Debian cron's, as CONTRACT §4 states:

* five fields: minute hour day-of-month month day-of-week; lists, ranges `a-b`, steps `*/n` and
  `a-b/n`, three-letter month and weekday names, Sunday as 0 or 7;
* when both day fields are restricted a day matches either of them (OR); when either field starts
  with `*` both must match (Vixie's rule, so `*/2` in day-of-month means "odd days AND ...");
* in a zone with daylight saving, a wall time skipped by the spring change runs at the jump, and a
  wall time repeated by the autumn change runs once (its first occurrence).

Why our own iterator instead of croniter: croniter 7 reads `1-1` as the whole range, wraps `5-2`
instead of refusing it, accepts `a/n`, and fires twice in a repeated autumn hour. Every one of
those needs a correction, and the validation has to be ours anyway; on top of the validated field
sets, the next-run walk is thirty lines, bounded, and provably follows the rules above. croniter
is still used, in `crosscheck_utc`, as an independent second opinion in UTC where it is correct.
"""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options


class ScheduleError(ValueError):
    """The expression is not a schedule we accept. str(e) is one line a person understands."""


MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTH_FULL = tuple(calendar.month_name)[1:]
WEEKDAY_FULL = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
# The longest each month can be, in any year (February 29 exists in leap years).
MONTH_MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30}
MONTH_MAX_DAYS[12] = 31

EXAMPLE = "`0 2 * * *` (every day at 02:00)"


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    def value_of(self, token: str) -> int:
        """A number or (in month/day-of-week) a three-letter name, to its integer value."""
        upper = token.upper()
        if token.isdigit():
            value = int(token)
            if not self.low <= value <= self.high:
                raise ScheduleError(
                    f"{value} is out of range for the {self.name} field (allowed {self.range_text})"
                )
            return value
        if self.names and upper in self.names:
            return self.names.index(upper) + self.name_base
        raise ScheduleError(self._explain_bad_value(token))

    @property
    def range_text(self) -> str:
        text = f"{self.low}-{self.high}"
        if self.names:
            text += f" or {self.names[0]}-{self.names[-1]}"
        if self.name == "day-of-week":
            text = "0-7 (0 and 7 are Sunday) or SUN-SAT"
        return text

    def _explain_bad_value(self, token: str) -> str:
        upper = token.upper()
        if self.name == "day-of-month" and (upper in {"L", "LW"} or upper.startswith("L-")):
            return (
                f"`{token}` (last day of the month) is a Quartz extension that standard cron does "
                "not have; list the days instead, e.g. `28-31` with a check in the job"
            )
        if self.name == "day-of-month" and upper.endswith("W") and upper[:-1].isdigit():
            return (
                f"`{token}` (nearest weekday) is a Quartz extension that standard cron does not "
                "have; use a day-of-month such as `15`, or weekdays such as `MON-FRI`"
            )
        if self.name == "day-of-week" and upper.endswith("L") and upper != "L":
            return (
                f"`{token}` (last such weekday of the month) is a Quartz extension that standard "
                "cron does not have; use a weekday such as `FRI`"
            )
        if upper == "L":
            return (
                "`L` (last day) is a Quartz extension that standard cron does not have; "
                "use a day number instead"
            )
        if self.names:
            full = MONTH_FULL if self.name == "month" else WEEKDAY_FULL
            for index, name in enumerate(full):
                if upper == name.upper() and len(upper) > 3:
                    short = self.names[index]
                    return f"`{token}`: use the three-letter name `{short}` in the {self.name}"
        if upper.isalpha() and len(upper) == 3 and (upper in MONTHS or upper in WEEKDAYS):
            right = "month" if upper in MONTHS else "day-of-week"
            return f"`{token}` is a {right} name; it cannot be used in the {self.name} field"
        return f"`{token}` is not a valid {self.name} value (allowed {self.range_text})"


FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day-of-month", 1, 31),
    _FieldSpec("month", 1, 12, MONTHS, 1),
    _FieldSpec("day-of-week", 0, 7, WEEKDAYS, 0),
)
_ELEMENT = re.compile(r"^(?P<start>\*|[A-Za-z0-9]+)(?:-(?P<end>[A-Za-z0-9]+))?(?:/(?P<step>.*))?$")


@dataclass(frozen=True)
class Schedule:
    """A validated cron expression and the values each field allows."""

    expression: str  # normalised: 5 fields, single spaces, names upper-case
    fields: tuple[str, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday; 7 already folded into 0
    dom_star: bool  # the day-of-month field starts with `*`
    dow_star: bool  # the day-of-week field starts with `*`
    source: str = field(default="", compare=False)  # what the user typed, for messages

    @property
    def dom_restricted(self) -> bool:
        return len(self.days) < 31

    @property
    def dow_restricted(self) -> bool:
        return len(self.weekdays) < 7

    @property
    def days_use_or(self) -> bool:
        """Vixie's rule: OR when neither day field starts with `*`, else AND."""
        return not (self.dom_star or self.dow_star)

    def day_matches(self, day: date) -> bool:
        dom_ok = day.day in self.days
        dow_ok = day.isoweekday() % 7 in self.weekdays
        if self.days_use_or:
            return dom_ok or dow_ok
        return dom_ok and dow_ok


# --- parsing -------------------------------------------------------------------------------------


def clean(text: str) -> str:
    """Strip what Slack or a shell leaves around an expression: backticks, quotes, whitespace."""
    text = text.strip()
    pairs = {"`": "`", '"': '"', "'": "'", "“": "”", "‘": "’", "”": "”", "„": "“"}
    changed = True
    while changed and text:
        changed = False
        if text.startswith("```") and text.endswith("```") and len(text) >= 6:
            text, changed = text[3:-3].strip(), True
        elif len(text) >= 2 and text[0] in pairs and text[-1] == pairs[text[0]]:
            text, changed = text[1:-1].strip(), True
    return text


def _check_characters(text: str) -> None:
    for char in text:
        if char in " \t" or (char.isascii() and (char.isalnum() or char in "*,-/@")):
            continue
        if char == "?":
            raise ScheduleError(
                "`?` is a Quartz extension that standard cron does not have; use `*` instead"
            )
        if char == "#":
            raise ScheduleError(
                "`#` (the nth weekday of the month) is a Quartz extension that standard cron "
                "does not have; use a day range with a weekday, e.g. `1-7` with a check in the job"
            )
        code = f"U+{ord(char):04X}"
        name = unicodedata.name(char, "unnamed character").lower()
        if unicodedata.category(char) == "Zs" or char in "\u200b\ufeff":
            raise ScheduleError(
                f"The schedule contains a {name} ({code}), not an ordinary space; "
                "retype the spaces between the fields"
            )
        if unicodedata.category(char) == "Nd":
            raise ScheduleError(
                f"The schedule contains the {name} `{char}` ({code}); "
                "use the ASCII digits 0-9 (switch off full-width input)"
            )
        if char in "\n\r\v\f":
            raise ScheduleError("The schedule must be on one line")
        printable = char if char.isprintable() else code
        raise ScheduleError(
            f"`{printable}` ({code}, {name}) is not part of cron; "
            "use digits, `*`, `,`, `-`, `/` and three-letter names"
        )


def _expand_field(spec: _FieldSpec, text: str) -> set[int]:
    values: set[int] = set()
    for element in text.split(","):
        if not element:
            raise ScheduleError(f"The {spec.name} field `{text}` has an empty item (two commas)")
        match = _ELEMENT.match(element)
        if not match:
            if element.startswith("-"):
                raise ScheduleError(
                    f"`{element}` is not allowed in the {spec.name} field: no negative values"
                )
            raise ScheduleError(
                f"`{element}` is not a valid {spec.name} item (allowed {spec.range_text}, "
                "`*`, lists `a,b`, ranges `a-b` and steps `*/n` or `a-b/n`)"
            )
        start_text, end_text, step_text = match.group("start", "end", "step")
        if start_text == "*":
            if end_text is not None:
                raise ScheduleError(f"`{element}`: `*` cannot start a range in the {spec.name}")
            low, high = spec.low, spec.high
        else:
            low = spec.value_of(start_text)
            high = low if end_text is None else spec.value_of(end_text)
            if high < low:
                wrap = f"{start_text}-{spec.high},{spec.low}-{end_text}"
                if spec.name == "day-of-week" and high == 0:
                    wrap = f"{start_text}-7"
                raise ScheduleError(
                    f"The range `{element}` in the {spec.name} field goes backwards; cron ranges "
                    f"run from low to high. For a range that wraps around, write `{wrap}`"
                )
        if step_text is None:
            step = 1
        else:
            if start_text != "*" and end_text is None:
                raise ScheduleError(
                    f"`{element}` is not standard cron: a step needs a range, e.g. "
                    f"`{start_text}-{spec.high}/{step_text}` or `*/{step_text}`"
                )
            if not step_text.isdigit():
                raise ScheduleError(f"`/{step_text}` in `{element}` is not a whole-number step")
            step = int(step_text)
            if step == 0:
                raise ScheduleError(f"`{element}` has a step of zero; use a step of 1 or more")
        values.update(range(low, high + 1, step))
    return values


@functools.lru_cache(maxsize=1024)
def parse_schedule(text: str) -> Schedule:
    """Validate and normalise `text`; raise ScheduleError with a reason a person understands.
    Remembered (a Schedule is immutable): people preview, submit and approve the same few
    expressions over and over."""
    source = text
    text = clean(text)
    if not text:
        raise ScheduleError(f"The schedule is empty; give five fields such as {EXAMPLE}")
    _check_characters(text)
    parts = text.split()
    if parts[0].startswith("@"):
        macro = parts[0].lower()
        if macro == "@reboot":
            raise ScheduleError(
                "`@reboot` runs once when a cron daemon starts; a backup policy needs a "
                f"repeating schedule such as {EXAMPLE}"
            )
        if macro not in MACROS:
            raise ScheduleError(
                f"`{parts[0]}` is not a cron macro; use one of {', '.join(MACROS)} or five fields"
            )
        if len(parts) > 1:
            raise ScheduleError(f"`{parts[0]}` stands alone; remove `{' '.join(parts[1:])}`")
        parts = MACROS[macro].split()
    elif any("@" in p for p in parts):
        raise ScheduleError("`@` is only allowed at the start of a macro such as `@daily`")
    if len(parts) != 5:
        raise ScheduleError(_field_count_reason(len(parts)))
    sets = [_expand_field(spec, part) for spec, part in zip(FIELDS, parts, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    fields = tuple(p.upper() for p in parts)
    schedule = Schedule(
        expression=" ".join(fields),
        fields=fields,
        minutes=tuple(sorted(sets[0])),
        hours=tuple(sorted(sets[1])),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=weekdays,
        dom_star=parts[2].startswith("*"),
        dow_star=parts[4].startswith("*"),
        source=source,
    )
    _check_fires(schedule)
    return schedule


def _field_count_reason(count: int) -> str:
    base = "minute hour day-of-month month day-of-week"
    if count == 6:
        return (
            f"The schedule has 6 fields; standard cron has 5 ({base}). A seconds field (Quartz, "
            "Spring) or a year field is not supported: remove it"
        )
    if count == 7:
        return (
            f"The schedule has 7 fields (Quartz seconds and year); standard cron has 5 ({base}): "
            "remove the first and the last"
        )
    plural = "s" * (count != 1)
    return f"The schedule has {count} field{plural}; cron needs 5 ({base}), e.g. {EXAMPLE}"


def _check_fires(schedule: Schedule) -> None:
    """Reject expressions that never fire, without scanning the calendar.

    With the OR rule any allowed weekday fires. With the AND rule a day must exist in an allowed
    month; every calendar date (February 29 included) falls on each weekday within a 400-year
    Gregorian cycle, so the weekdays never make a real date impossible.
    """
    if schedule.days_use_or:
        return
    for month in schedule.months:
        if any(day <= MONTH_MAX_DAYS[month] for day in schedule.days):
            return
    day_list = _human_list([str(d) for d in sorted(schedule.days)])
    months = _human_list([MONTH_FULL[m - 1] for m in sorted(schedule.months)])
    raise ScheduleError(
        f"`{schedule.expression}` never runs: day {day_list} does not occur in {months}"
    )


def _human_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) > 8:
        items = [*items[:7], f"… ({len(items)} in all)"]
        return ", ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --- next runs -----------------------------------------------------------------------------------

_SCAN_YEARS = 401  # the Gregorian calendar, weekdays included, repeats every 400 years


def _wall_times(schedule: Schedule, start: datetime) -> Iterator[datetime]:
    """Every matching local wall time at or after the naive wall time `start`, in order."""
    months = sorted(schedule.months)
    days = range(1, 32) if schedule.days_use_or else sorted(schedule.days)
    first_day = start.date()
    for year in range(start.year, min(start.year + _SCAN_YEARS, MAXYEAR + 1)):
        for month in months:
            if (year, month) < (start.year, start.month):
                continue
            last = calendar.monthrange(year, month)[1]
            for day in days:
                if day > last:
                    break
                today = date(year, month, day)
                if today < first_day or not schedule.day_matches(today):
                    continue
                on_first_day = today == first_day
                for hour in schedule.hours:
                    if on_first_day and hour < start.hour:
                        continue
                    for minute in schedule.minutes:
                        wall = datetime(year, month, day, hour, minute)
                        if on_first_day and wall < start:
                            continue
                        yield wall


def resolve_wall_time(wall: datetime, zone: tzinfo) -> datetime:
    """The instant a cron daemon runs a job set for local wall time `wall`.

    Repeated (autumn) wall times run at their first occurrence; skipped (spring) wall times run at
    the moment of the jump, when the clocks move forward.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    before, after = first.utcoffset(), second.utcoffset()
    if before is None or after is None or before >= after:
        return first  # ordinary, or repeated: the first occurrence
    # Skipped: the jump lies between the two readings; find it to the second.
    low = (wall - after).replace(tzinfo=UTC)
    high = (wall - before).replace(tzinfo=UTC)
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == after:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0).astimezone(zone)


def iter_runs(schedule: Schedule, after: datetime, zone: tzinfo) -> Iterator[datetime]:
    """Runs strictly after `after` (an aware datetime), as aware datetimes in `zone`, ascending."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    # Wall time to instant (first occurrence; the jump for skipped times) never decreases, so a
    # wall time before `after`'s own wall time cannot run after it: start the walk there.
    try:
        start = after.astimezone(zone).replace(tzinfo=None, fold=0)
        # Compare in UTC: Python compares datetimes sharing a tzinfo by wall time, ignoring fold.
        last = after.astimezone(UTC)
    except OverflowError:
        return  # `after` lies at the end of the calendar Python can represent (year 9999)
    for wall in _wall_times(schedule, start):
        try:
            instant = resolve_wall_time(wall, zone)
            instant_utc = instant.astimezone(UTC)
        except OverflowError:
            return  # the end of the calendar Python can represent (year 9999)
        if instant_utc > last:
            last = instant_utc
            yield instant


def next_runs(schedule: Schedule, after: datetime, count: int, zone: tzinfo) -> list[datetime]:
    """The next `count` runs strictly after `after`, in `zone`."""
    runs: list[datetime] = []
    for run in iter_runs(schedule, after, zone):
        runs.append(run)
        if len(runs) >= count:
            break
    return runs


def crosscheck_utc(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """croniter's answer in UTC, where its semantics and ours agree (see the module docstring)."""
    from croniter import croniter

    it = croniter(schedule.expression, after.astimezone(UTC), day_or=schedule.days_use_or)
    return [it.get_next(datetime) for _ in range(count)]


# --- description ---------------------------------------------------------------------------------


def _descriptor_field(spec: _FieldSpec, text: str, values: set[int]) -> str:
    """A field in the form cron-descriptor describes well: numbers, no day steps, no `a-a`."""
    stepped_list = "/" in text and "," in text  # cron-descriptor cannot read `*/6,1`
    if stepped_list or (spec.name in {"day-of-month", "day-of-week"} and "/" in text):
        folded = sorted({0 if v == 7 and spec.name == "day-of-week" else v for v in values})
        full = range(spec.low, (6 if spec.name == "day-of-week" else spec.high) + 1)
        return "*" if folded == list(full) else ",".join(str(v) for v in folded)
    items = []
    for element in text.split(","):
        match = _ELEMENT.match(element)
        assert match is not None
        start, end, step = match.group("start", "end", "step")
        if start == "*":
            items.append(element)
            continue
        low = spec.value_of(start)
        high = low if end is None else spec.value_of(end)
        if spec.name == "day-of-week" and step is None and high == 7:
            items.append("0-6" if low == 0 else ",".join(str(v % 7) for v in range(low, 8)))
            continue
        piece = str(low) if low == high else f"{low}-{high}"
        items.append(piece + (f"/{step}" if step not in (None, "1") else ""))
    return ",".join(items)


def forget_cached() -> None:
    """Drop what parse_schedule and describe remember (the benchmark times the work itself)."""
    parse_schedule.cache_clear()
    _describe_expression.cache_clear()


def describe(schedule: Schedule) -> str:
    """English, 24-hour times; day steps are spelled out as the days they mean."""
    return _describe_expression(schedule.expression)


@functools.lru_cache(maxsize=1024)
def _describe_expression(expression: str) -> str:
    # cron-descriptor loads its locale on every call; people reuse a handful of expressions.
    schedule = parse_schedule(expression)
    parts = [
        _descriptor_field(spec, text, values)
        for spec, text, values in zip(
            FIELDS,
            schedule.fields,
            [
                set(schedule.minutes),
                set(schedule.hours),
                set(schedule.days),
                set(schedule.months),
                set(schedule.weekdays),
            ],
            strict=True,
        )
    ]
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        text = str(ExpressionDescriptor(" ".join(parts), options).get_description())
    except Exception:  # a form the library cannot phrase: say it plainly rather than fail
        text = _plain_description(schedule)
    if schedule.dom_restricted and schedule.dow_restricted and not schedule.days_use_or:
        # cron-descriptor always joins the two day fields with "or"; Vixie's rule says "and" here.
        joined = text.replace(", or on ", ", but only if it is ", 1)
        text = joined if joined != text else text + " (only on days that match both day fields)"
    return text


def _plain_description(schedule: Schedule) -> str:
    def values(items: Iterable[int], width: int = 0) -> str:
        return _human_list([str(v).zfill(width) for v in sorted(items)])

    text = f"At minute {values(schedule.minutes, 2)} past hour {values(schedule.hours, 2)}"
    if schedule.dom_restricted:
        text += f", on day {values(schedule.days)} of the month"
    if schedule.dow_restricted:
        joiner = " or" if schedule.days_use_or and schedule.dom_restricted else ","
        text += f"{joiner} on {_human_list([WEEKDAY_FULL[d] for d in sorted(schedule.weekdays)])}"
    if len(schedule.months) < 12:
        text += f", in {_human_list([MONTH_FULL[m - 1] for m in sorted(schedule.months)])}"
    return text


# --- warnings ------------------------------------------------------------------------------------

DOCUMENTED_MAX_RESERVE_DAYS = 10
DOCUMENTED_MAX_FILES = 5


def lint(
    schedule: Schedule,
    zone: tzinfo,
    after: datetime,
    reserve: int | None = None,
    max_files: int | None = None,
) -> list[str]:
    """Warnings: things that are valid cron but probably not what was meant. Each has its fix."""
    warnings: list[str] = []
    dom_text, dow_text = schedule.fields[2], schedule.fields[4]
    if schedule.dom_restricted and schedule.dow_restricted:
        if schedule.days_use_or:
            warnings.append(
                f"Both day fields are set (day-of-month `{dom_text}`, day-of-week `{dow_text}`), "
                "so cron runs on days that match EITHER of them, not only days that match both. "
                "To mean only one, set the other to `*`."
            )
        else:
            starred = dom_text if schedule.dom_star else dow_text
            warnings.append(
                f"`{starred}` starts with `*`, so cron runs only on days that match BOTH day "
                f"fields (day-of-month `{dom_text}` and day-of-week `{dow_text}`). "
                "To match either, write the days as a list without `*`."
            )
    minute_text, hour_text = schedule.fields[0], schedule.fields[1]
    per_hour = len(schedule.minutes)
    if minute_text == "*" and hour_text != "*":
        first_hour = schedule.hours[0]
        if len(schedule.hours) == 1:
            span = f"from {first_hour:02d}:00 to {first_hour:02d}:59"
        else:
            span = f"in each of the hours `{hour_text}`"
        fixed = " ".join(["0", *schedule.fields[1:]])
        warnings.append(
            f"`* {hour_text}` runs every minute {span} (60 runs an hour); did you mean `{fixed}`?"
        )
    elif per_hour > 1:
        warnings.append(
            f"Runs {per_hour} times an hour, more often than hourly; an engine keeps at most "
            f"{DOCUMENTED_MAX_FILES} automatic backups, so each one would be replaced within the "
            "hour. Use a single minute, e.g. `0` in the minute field."
        )
    if reserve is not None and reserve > DOCUMENTED_MAX_RESERVE_DAYS:
        warnings.append(
            f"Retention of {reserve} days is above the {DOCUMENTED_MAX_RESERVE_DAYS} days that "
            "the CSE user guide says an engine keeps backup data; older backups may be removed "
            f"anyway. Use {DOCUMENTED_MAX_RESERVE_DAYS} or less."
        )
    if max_files is not None and max_files > DOCUMENTED_MAX_FILES:
        warnings.append(
            f"Max files {max_files} is above the {DOCUMENTED_MAX_FILES} automatic backups that "
            f"the CSE user guide says an engine keeps; use {DOCUMENTED_MAX_FILES} or less."
        )
    if reserve is not None and max_files is not None and max_files > 0:
        runs = next_runs(schedule, after, max_files + 1, zone)
        if len(runs) == max_files + 1:
            filled = runs[-1].astimezone(UTC) - runs[0].astimezone(UTC)
            if filled < timedelta(days=reserve):
                warnings.append(
                    f"This schedule makes {max_files + 1} backups within "
                    f"{_human_span(filled)}, so with max files {max_files} the oldest is "
                    f"deleted before the {reserve}-day retention ends. Raise max files or "
                    "back up less often."
                )
    return warnings


def _human_span(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    if hours < 48:
        whole = max(1, round(hours))
        return f"{whole} hour{'s' * (whole != 1)}"
    days = round(hours / 24)
    return f"{days} days"


# --- the one call the surfaces use ---------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    expression: str
    description: str
    timezone: str
    runs: list[datetime]
    warnings: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            "expression": self.expression,
            "description": self.description,
            "timezone": self.timezone,
            "runs": [run.isoformat() for run in self.runs],
            "warnings": list(self.warnings),
        }


def zone_name(zone: tzinfo) -> str:
    return zone.key if isinstance(zone, ZoneInfo) else str(zone)


def preview(
    text: str,
    *,
    zone: tzinfo,
    after: datetime,
    count: int = 5,
    reserve: int | None = None,
    max_files: int | None = None,
) -> Preview:
    """Everything a person needs to see before approving: raises ScheduleError when invalid."""
    schedule = parse_schedule(text)
    return Preview(
        expression=schedule.expression,
        description=describe(schedule),
        timezone=zone_name(zone),
        runs=next_runs(schedule, after, count, zone),
        warnings=lint(schedule, zone, after, reserve, max_files),
    )
