"""The schedule engine: every accepted and rejected form of CONTRACT §4 "Schedules"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.core.schedule import (
    ScheduleError,
    crosscheck_utc,
    describe,
    lint,
    next_runs,
    parse_schedule,
    preview,
)

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def runs(expr: str, after: str, count: int = 5, zone: ZoneInfo = UTC_ZONE) -> list[str]:
    start = datetime.fromisoformat(after)
    if start.tzinfo is None:
        start = start.replace(tzinfo=zone)
    return [r.isoformat() for r in next_runs(parse_schedule(expr), start, count, zone)]


# --- accepted forms and their runs ---------------------------------------------------------------

RUN_CASES = [
    (
        "every day at 02:00",
        "0 2 * * *",
        "2026-12-03T00:00:00+00:00",
        2,
        ["2026-12-03T02:00:00+00:00", "2026-12-04T02:00:00+00:00"],
    ),
    (
        "strictly after: an exact match is not included",
        "0 2 * * *",
        "2026-12-03T02:00:00+00:00",
        1,
        ["2026-12-04T02:00:00+00:00"],
    ),
    (
        "lists",
        "0 2,14 * * *",
        "2026-12-03T03:00:00+00:00",
        2,
        ["2026-12-03T14:00:00+00:00", "2026-12-04T02:00:00+00:00"],
    ),
    (
        "a range",
        "0 0 * * 1-5",
        "2026-12-04T12:00:00+00:00",
        2,  # a Friday
        ["2026-12-07T00:00:00+00:00", "2026-12-08T00:00:00+00:00"],
    ),
    (
        "a step over the whole range",
        "*/20 3 * * *",
        "2026-12-03T00:00:00+00:00",
        3,
        ["2026-12-03T03:00:00+00:00", "2026-12-03T03:20:00+00:00", "2026-12-03T03:40:00+00:00"],
    ),
    (
        "a step over a range",
        "10-50/20 3 * * *",
        "2026-12-03T00:00:00+00:00",
        3,
        ["2026-12-03T03:10:00+00:00", "2026-12-03T03:30:00+00:00", "2026-12-03T03:50:00+00:00"],
    ),
    (
        "1-1 is one value, not the whole range",
        "0 0 1-1 * *",
        "2026-12-03T00:00:00+00:00",
        2,
        ["2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"],
    ),
    (
        "month names, any case",
        "0 0 1 jan,Jul *",
        "2026-12-03T00:00:00+00:00",
        2,
        ["2027-01-01T00:00:00+00:00", "2027-07-01T00:00:00+00:00"],
    ),
    (
        "weekday names in a range",
        "0 6 * * MON-WED",
        "2026-12-03T00:00:00+00:00",
        2,  # Thursday
        ["2026-12-07T06:00:00+00:00", "2026-12-08T06:00:00+00:00"],
    ),
    ("Sunday as 7", "0 0 * * 7", "2026-12-03T00:00:00+00:00", 1, ["2026-12-06T00:00:00+00:00"]),
    ("Sunday as 0", "0 0 * * 0", "2026-12-03T00:00:00+00:00", 1, ["2026-12-06T00:00:00+00:00"]),
    (
        "a range ending at 7 includes Sunday",
        "0 0 * * 6-7",
        "2026-12-03T00:00:00+00:00",
        2,
        ["2026-12-05T00:00:00+00:00", "2026-12-06T00:00:00+00:00"],
    ),
    (
        "Feb 29 only in leap years",
        "0 0 29 2 *",
        "2026-12-03T00:00:00+00:00",
        2,
        ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
    ),
    (
        "Feb 29 skips 2100, which is not a leap year",
        "0 0 29 2 *",
        "2097-01-01T00:00:00+00:00",
        1,
        ["2104-02-29T00:00:00+00:00"],
    ),
    (
        "both day fields restricted: either matches (OR)",
        "0 0 13 * 5",
        "2026-12-01T00:00:00+00:00",
        3,
        ["2026-12-04T00:00:00+00:00", "2026-12-11T00:00:00+00:00", "2026-12-13T00:00:00+00:00"],
    ),
    (
        "day-of-month starting with * : both must match (AND)",
        "0 0 */2 * 1",
        "2026-12-01T00:00:00+00:00",
        2,
        ["2026-12-07T00:00:00+00:00", "2026-12-21T00:00:00+00:00"],
    ),
    (
        "day-of-week starting with * : both must match (AND)",
        "0 0 13 * */5",
        "2026-01-01T00:00:00+00:00",
        2,
        ["2026-02-13T00:00:00+00:00", "2026-03-13T00:00:00+00:00"],
    ),
    (
        "a sparse expression: Feb 29 that is a Monday (OR rule: every Monday in Feb too)",
        "0 0 29 2 1",
        "2026-12-03T00:00:00+00:00",
        1,
        ["2027-02-01T00:00:00+00:00"],
    ),
    (
        "a very sparse one: Feb 29 that is a Sunday (AND rule)",
        "0 0 29 2 */7",
        "2026-12-03T00:00:00+00:00",
        2,
        ["2032-02-29T00:00:00+00:00", "2060-02-29T00:00:00+00:00"],
    ),
    (
        "step larger than the range is the first value",
        "0 0 */40 * *",
        "2026-12-03T00:00:00+00:00",
        1,
        ["2027-01-01T00:00:00+00:00"],
    ),
]


@pytest.mark.parametrize(
    ("case", "expr", "after", "count", "expected"), RUN_CASES, ids=[c[0] for c in RUN_CASES]
)
def test_runs(case: str, expr: str, after: str, count: int, expected: list[str]) -> None:
    assert runs(expr, after, count) == expected


MACRO_CASES = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@DAILY", "0 0 * * *"),
]


@pytest.mark.parametrize(("macro", "expanded"), MACRO_CASES)
def test_macros_expand_to_five_fields(macro: str, expanded: str) -> None:
    assert parse_schedule(macro).expression == expanded


NORMALISE_CASES = [
    ("`0 2 * * *`", "0 2 * * *"),
    ("```0 2 * * *```", "0 2 * * *"),
    ("  0   2\t*  * *  ", "0 2 * * *"),
    ('"0 2 * * *"', "0 2 * * *"),
    ("“0 2 * * *”", "0 2 * * *"),
    ("‘0 2 * * *’", "0 2 * * *"),
    ("0 2 * jan mon-fri", "0 2 * JAN MON-FRI"),
    ("`@daily`", "0 0 * * *"),
]


@pytest.mark.parametrize(("typed", "normalised"), NORMALISE_CASES)
def test_normalisation(typed: str, normalised: str) -> None:
    assert parse_schedule(typed).expression == normalised


# --- rejected forms: each has a reason a person understands --------------------------------------

REJECT_CASES = [
    ("empty", "", "empty"),
    ("only backticks", "``", "empty"),
    ("seconds field (6 fields)", "0 0 2 * * *", "seconds"),
    ("year field (6 fields)", "0 2 * * * 2027", "year"),
    ("Quartz 7 fields", "0 0 2 * * ? 2027", "Quartz"),
    ("too few fields", "0 2 * *", "4 fields"),
    ("Quartz ?", "0 2 ? * MON", "Quartz"),
    ("Quartz L in day-of-month", "0 2 L * *", "Quartz"),
    ("Quartz LW", "0 2 LW * *", "Quartz"),
    ("Quartz W", "0 2 15W * *", "nearest weekday"),
    ("Quartz nL in day-of-week", "0 2 * * 5L", "Quartz"),
    ("Quartz #", "0 2 * * 1#3", "Quartz"),
    ("@reboot", "@reboot", "@reboot"),
    ("unknown macro", "@often", "not a cron macro"),
    ("macro with more fields", "@daily 5", "stands alone"),
    ("reversed range", "0 5-2 * * *", "backwards"),
    ("reversed weekday names", "0 2 * * FRI-MON", "backwards"),
    ("bare a/n", "5/15 * * * *", "step needs a range"),
    ("zero step", "*/0 * * * *", "step of zero"),
    ("zero step in a range", "0 1-10/0 * * *", "step of zero"),
    ("non-numeric step", "*/x * * * *", "step"),
    ("minute 60", "60 * * * *", "out of range"),
    ("hour 24", "0 24 * * *", "out of range"),
    ("day 0", "0 0 0 * *", "out of range"),
    ("day 32", "0 0 32 * *", "out of range"),
    ("month 0", "0 0 1 0 *", "out of range"),
    ("month 13", "0 0 1 13 *", "out of range"),
    ("weekday 8", "0 0 * * 8", "out of range"),
    ("negative", "-5 * * * *", "negative"),
    ("non-breaking space", "0\u00a02 * * *", "U+00A0"),
    ("narrow no-break space", "0\u202f2 * * *", "U+202F"),
    ("full-width digit", "０ 2 * * *", "U+FF10"),
    ("emoji", "0 2 * * 🙂", "not part of cron"),
    ("two lines", "0 2 * * *\n0 3 * * *", "one line"),
    ("never fires: Feb 30", "0 0 30 2 *", "never runs"),
    ("never fires: Apr 31", "0 0 31 4 *", "never runs"),
    ("never fires: 31 in 30-day months", "0 0 31 4,6,9,11 *", "never runs"),
    ("never fires with a starred weekday", "0 0 30 2 */2", "never runs"),
    ("full weekday name", "0 2 * * MONDAY", "three-letter"),
    ("month name in the hour field", "0 JAN * * *", "month name"),
    ("weekday name in the month field", "0 2 * MON *", "day-of-week name"),
    ("empty list item", "0 2,,4 * * *", "empty item"),
    ("garbage", "every day", "field"),
    ("star as range start", "0 *-5 * * *", "range"),
]


@pytest.mark.parametrize(("case", "expr", "reason"), REJECT_CASES, ids=[c[0] for c in REJECT_CASES])
def test_rejected_with_a_reason(case: str, expr: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(expr)
    message = str(info.value)
    assert reason.lower() in message.lower()
    assert "\n" not in message
    assert "Traceback" not in message


def test_never_firing_is_rejected_quickly_whatever_the_months() -> None:
    # Detected without scanning the calendar: 12 months x 31 days at most.
    with pytest.raises(ScheduleError, match="never runs"):
        parse_schedule("0 0 30,31 2 */3")


# --- DST -----------------------------------------------------------------------------------------

DST_CASES = [
    # Europe/Berlin spring: 02:00 -> 03:00 on 2026-03-29
    (
        "Berlin spring: skipped time runs at the jump",
        BERLIN,
        "30 2 * * *",
        "2026-03-28T12:00:00+01:00",
        2,
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    (
        "Berlin spring: several skipped times run once at the jump",
        BERLIN,
        "*/20 2 * * *",
        "2026-03-29T00:00:00+01:00",
        2,
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
    ),
    (
        "Berlin spring: hourly skips nothing but the missing hour",
        BERLIN,
        "0 * * * *",
        "2026-03-29T00:30:00+01:00",
        3,
        ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
    ),
    # Europe/Berlin autumn: 03:00 -> 02:00 on 2026-10-25
    (
        "Berlin autumn: repeated time runs once",
        BERLIN,
        "30 2 * * *",
        "2026-10-24T12:00:00+02:00",
        2,
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    ),
    (
        "Berlin autumn: every 30 minutes runs the repeated hour once",
        BERLIN,
        "*/30 * * * *",
        "2026-10-25T01:45:00+02:00",
        4,
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-25T03:30:00+01:00",
        ],
    ),
    # America/New_York spring: 02:00 -> 03:00 on 2026-03-08; autumn 02:00 -> 01:00 on 2026-11-01
    (
        "New York spring: skipped time runs at the jump",
        NEW_YORK,
        "30 2 * * *",
        "2026-03-07T12:00:00-05:00",
        2,
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    (
        "New York autumn: repeated time runs once",
        NEW_YORK,
        "30 1 * * *",
        "2026-10-31T12:00:00-04:00",
        2,
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    ),
    (
        "New York autumn: after, in the second 01:xx, never goes back",
        NEW_YORK,
        "*/20 1 * * *",
        "2026-11-01T01:30:00-05:00",
        2,
        ["2026-11-02T01:00:00-05:00", "2026-11-02T01:20:00-05:00"],
    ),
    (
        "New York autumn: from the first 01:30",
        NEW_YORK,
        "*/20 1 * * *",
        "2026-11-01T01:30:00-04:00",
        2,
        ["2026-11-01T01:40:00-04:00", "2026-11-02T01:00:00-05:00"],
    ),
]


@pytest.mark.parametrize(
    ("case", "zone", "expr", "after", "count", "expected"), DST_CASES, ids=[c[0] for c in DST_CASES]
)
def test_dst(
    case: str, zone: ZoneInfo, expr: str, after: str, count: int, expected: list[str]
) -> None:
    assert runs(expr, after, count, zone) == expected


# --- description ---------------------------------------------------------------------------------

DESCRIBE_CASES = [
    ("0 2 * * *", ["02:00"]),
    ("30 14 * * *", ["14:30"]),  # 24-hour times, never "PM"
    ("0 2 */7 * *", ["1, 8, 15, 22, and 29"]),
    ("0 2 1-31/10 * *", ["1, 11, 21, and 31"]),
    ("0 2 * * 1-5", ["Monday through Friday"]),
    ("0 2 * * 5-7", ["Friday", "Saturday", "Sunday"]),
    ("0 0 1-1 * *", ["day 1 of the month"]),
    ("0 0 */2 * 1", ["only if it is Monday"]),
]


@pytest.mark.parametrize(("expr", "fragments"), DESCRIBE_CASES)
def test_description(expr: str, fragments: list[str]) -> None:
    text = describe(parse_schedule(expr))
    for fragment in fragments:
        assert fragment in text
    assert "PM" not in text and "AM" not in text
    assert "every 7 days" not in text


# --- warnings ------------------------------------------------------------------------------------

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def warnings_for(expr: str, reserve: int | None = None, max_files: int | None = None) -> list[str]:
    return lint(parse_schedule(expr), UTC_ZONE, NOW, reserve, max_files)


def test_classic_slip_suggests_minute_zero() -> None:
    found = warnings_for("* 2 * * *")
    assert any("did you mean `0 2 * * *`" in w and "02:00 to 02:59" in w for w in found)


def test_more_often_than_hourly() -> None:
    assert any("more often than hourly" in w for w in warnings_for("*/15 * * * *"))
    assert not any("hourly" in w for w in warnings_for("0 * * * *"))


def test_both_day_fields_say_which_rule() -> None:
    assert any("EITHER" in w for w in warnings_for("0 2 1 * MON"))
    assert any("BOTH" in w for w in warnings_for("0 2 */2 * MON"))
    assert warnings_for("0 2 * * MON") == []


def test_documented_engine_limits_are_warnings() -> None:
    assert any("10 days" in w for w in warnings_for("0 2 * * 0", reserve=30, max_files=5))
    assert any(
        "5 automatic backups" in w for w in warnings_for("0 2 * * 0", reserve=7, max_files=9)
    )


def test_max_files_filled_before_retention() -> None:
    found = warnings_for("0 2 * * *", reserve=7, max_files=5)
    assert any("before the 7-day retention" in w for w in found)
    # Weekly backups: 5 files last 4 weeks, longer than 7 days: no warning.
    assert not any("retention" in w for w in warnings_for("0 2 * * 0", reserve=7, max_files=5))


def test_clean_schedule_has_no_warnings() -> None:
    assert warnings_for("0 2 * * *", reserve=3, max_files=5) == []


def test_preview_bundles_everything() -> None:
    result = preview("`@daily`", zone=BERLIN, after=NOW, count=3)
    assert result.expression == "0 0 * * *"
    assert result.timezone == "Europe/Berlin"
    assert [r.isoformat() for r in result.runs] == [
        "2026-12-04T00:00:00+01:00",
        "2026-12-05T00:00:00+01:00",
        "2026-12-06T00:00:00+01:00",
    ]
    assert result.to_json()["runs"] == [r.isoformat() for r in result.runs]


# --- properties ----------------------------------------------------------------------------------


def _field(
    low: int, high: int, names: tuple[str, ...] = (), base: int = 0
) -> st.SearchStrategy[str]:
    value = st.integers(low, high)

    def show(v: int) -> st.SearchStrategy[str]:
        options = [st.just(str(v))]
        if names and 0 <= v - base < len(names):
            options.append(st.just(names[v - base]))
        return st.one_of(options)

    single = value.flatmap(show)
    pair = st.tuples(value, value).map(sorted)
    rng = pair.map(lambda p: f"{p[0]}-{p[1]}")
    step = st.integers(1, high - low + 2)
    items = st.one_of(
        single,
        rng,
        step.map(lambda n: f"*/{n}"),
        st.tuples(pair, step).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
    )
    return st.one_of(
        st.just("*"),
        items,
        st.lists(items, min_size=2, max_size=4).map(",".join),
    )


MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
EXPRESSIONS = st.tuples(
    _field(0, 59),
    _field(0, 23),
    _field(1, 31),
    _field(1, 12, MONTH_NAMES, 1),
    _field(0, 7, DAY_NAMES, 0),
).map(" ".join)
INSTANTS = st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
)


def _valid(expr: str):  # type: ignore[no-untyped-def]
    try:
        return parse_schedule(expr)
    except ScheduleError:
        assume(False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(EXPRESSIONS, INSTANTS)
def test_runs_agree_with_cronsim_in_utc(expr: str, after: datetime) -> None:
    schedule = _valid(expr)
    ours = next_runs(schedule, after, 5, UTC_ZONE)
    sim = CronSim(expr, after.replace(tzinfo=None))
    theirs = [next(sim).replace(tzinfo=UTC) for _ in range(len(ours))]
    assert [r.astimezone(UTC) for r in ours] == theirs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    EXPRESSIONS,
    INSTANTS,
    st.sampled_from(
        ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    ),
)
def test_runs_increase_and_match(expr: str, after: datetime, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    schedule = _valid(expr)
    found = next_runs(schedule, after, 6, zone)
    assert found, "a valid expression always fires"
    previous = after
    for run in found:
        assert run.astimezone(UTC) > previous.astimezone(UTC)
        previous = run
        wall = run.replace(tzinfo=None)
        jumped = (wall - timedelta(minutes=0)).replace(tzinfo=zone).utcoffset() != (
            (wall - timedelta(hours=3)).replace(tzinfo=zone).utcoffset()
        )
        if not jumped:  # away from a clock change the wall time itself matches every field
            assert wall.minute in schedule.minutes
            assert wall.hour in schedule.hours
            assert wall.month in schedule.months
            assert schedule.day_matches(wall.date())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_accepted_or_rejected_with_one_line(text: str) -> None:
    try:
        schedule = parse_schedule(text)
    except ScheduleError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert len(schedule.expression.split()) == 5


def test_the_end_of_the_calendar_ends_the_runs_without_an_error() -> None:
    schedule = parse_schedule("0 0 29 2 *")
    assert next_runs(schedule, datetime(9999, 1, 1, tzinfo=UTC), 3, UTC_ZONE) == []
    late = datetime(9999, 12, 31, 23, 0, tzinfo=ZoneInfo("Etc/GMT+12"))
    assert next_runs(parse_schedule("0 0 * * *"), late, 3, UTC_ZONE) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(EXPRESSIONS)
def test_every_valid_expression_has_a_24_hour_description(expr: str) -> None:
    text = describe(_valid(expr))
    assert text
    assert " AM" not in text and " PM" not in text
    assert "every 1 " not in text.lower()


CROSSCHECK_CASES = [
    "0 2 * * *",
    "*/15 * * * *",
    "0 2 * * 1-5",
    "30 1 1,15 * *",
    "0 0 1 * MON",
    "0 0 */2 * 1",
    "0 6 * JAN-MAR SUN",
    "0 0 29 2 *",
    "0 0 * * 7",
    "10-50/20 3 * * *",
    "@hourly",
    "0 0 13 * 5",
]


@pytest.mark.parametrize("expr", CROSSCHECK_CASES)
def test_croniter_second_opinion_agrees_in_utc(expr: str) -> None:
    # README promises croniter as a second opinion in UTC, where its semantics match ours.
    after = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    schedule = parse_schedule(expr)
    ours = [r.astimezone(UTC) for r in next_runs(schedule, after, 5, UTC_ZONE)]
    assert [r.astimezone(UTC) for r in crosscheck_utc(schedule, after, 5)] == ours
