"""The schedule engine's cost: the full preview (parse, describe, next 5 runs, lint) of chosen
expressions, the time to reject one that never fires, and the worst case over a sample of
valid expressions drawn by Hypothesis (seeded, so every run times the same sample)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.core.schedule import (
    MACROS,
    MONTHS,
    WEEKDAYS,
    ScheduleError,
    forget_cached,
    parse_schedule,
    preview,
)

AFTER = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")

# (label, expression, what is timed)
CHOSEN: tuple[tuple[str, str, str], ...] = (
    ("typical", "0 2 * * *", "preview"),
    ("sparse", "0 0 29 2 1", "preview"),
    ("leap day only", "0 0 29 2 *", "preview"),
    ("never fires", "0 0 30 2 *", "reject"),
)


@dataclass(frozen=True)
class Timing:
    label: str
    expression: str
    kind: str  # preview | reject
    p50: float  # seconds
    p95: float  # seconds; what the target is judged on (a lone slow repeat is the machine)
    worst: float  # seconds, the slowest repeat


@dataclass(frozen=True)
class SampleWorst:
    size: int  # valid expressions timed
    rejected: int  # drawn expressions the engine refused (never fire), timed as rejections
    worst_preview: float  # seconds: the slowest expression (each the best of its repeats)
    worst_expression: str
    worst_zone: str
    worst_reject: float
    worst_reject_expression: str


def _repeat(call: Callable[[], object], repeats: int) -> list[float]:
    """Seconds per call, each cold: the engine remembers parsed and described expressions, and
    what is timed here is the work for an expression it has not seen."""
    times = []
    for _ in range(repeats):
        forget_cached()
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def _quantiles(times: list[float]) -> tuple[float, float, float]:
    """p50, p95 and max."""
    ordered = sorted(times)
    return (
        ordered[len(ordered) // 2],
        ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        ordered[-1],
    )


def _reject(expression: str) -> None:
    try:
        parse_schedule(expression)
    except ScheduleError:
        return
    raise AssertionError(f"{expression!r} was expected to be refused")


def time_chosen(repeats: int) -> list[Timing]:
    zone = ZoneInfo("UTC")
    rows = []
    for label, expression, kind in CHOSEN:
        if kind == "reject":
            times = _repeat(partial(_reject, expression), repeats)
        else:
            times = _repeat(partial(preview, expression, zone=zone, after=AFTER, count=5), repeats)
        rows.append(Timing(label, expression, kind, *_quantiles(times)))
    return rows


# --- the Hypothesis sample ---------------------------------------------------------------------


def _field(
    low: int, high: int, name_of: Callable[[int], str] | None = None
) -> st.SearchStrategy[str]:
    """One cron field: `*`, `*/n`, or a list of values, ranges and stepped ranges."""
    value = st.integers(low, high)
    if name_of is not None:
        named = name_of
        single = value.flatmap(lambda v: st.sampled_from([str(v), named(v)]))
    else:
        single = value.map(str)
    span = st.tuples(value, value).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}")
    step = st.integers(1, high - low)
    stepped_span = st.tuples(span, step).map(lambda t: f"{t[0]}/{t[1]}")
    star_step = step.map(lambda n: f"*/{n}")
    listed = st.lists(st.one_of(single, span, stepped_span), min_size=1, max_size=4).map(",".join)
    return st.one_of(st.just("*"), star_step, listed)


def cron_expressions() -> st.SearchStrategy[str]:
    five = st.tuples(
        _field(0, 59),
        _field(0, 23),
        _field(1, 31),
        _field(1, 12, lambda v: MONTHS[v - 1]),
        _field(0, 7, lambda v: WEEKDAYS[v % 7]),
    ).map(" ".join)
    # Days that exist in only some months, and months that lack them: now and then never fires.
    rare_days = st.tuples(
        _field(0, 59),
        _field(0, 23),
        st.sampled_from(["29", "30", "31", "30,31", "29-31", "31/2"]),
        st.sampled_from(["2", "FEB", "2,4", "APR,JUN", "2-4/2", "9,11", "1-12/3"]),
        st.sampled_from(["*", "*/2", "MON", "1-5"]),
    ).map(" ".join)
    return st.one_of(five, five, five, rare_days, st.sampled_from(sorted(MACROS)))


def draw_sample(size: int) -> list[tuple[str, str, datetime]]:
    drawn: list[tuple[str, str, datetime]] = []

    @settings(
        max_examples=size,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        cron_expressions(),
        st.sampled_from(ZONES),
        st.datetimes(datetime(2024, 1, 1), datetime(2030, 12, 31)),
    )
    def collect(expression: str, zone: str, after: datetime) -> None:
        drawn.append((expression, zone, after.replace(tzinfo=UTC)))

    collect()
    return drawn


def worst_over_sample(size: int, repeats: int = 3) -> SampleWorst:
    worst = (0.0, "", "")
    worst_reject = (0.0, "")
    valid = rejected = 0
    for expression, zone_name, after in draw_sample(size):
        zone = ZoneInfo(zone_name)
        try:
            parse_schedule(expression)
        except ScheduleError:
            rejected += 1
            best = min(_repeat(partial(_reject, expression), repeats))
            worst_reject = max(worst_reject, (best, expression))
            continue
        valid += 1
        best = min(_repeat(partial(preview, expression, zone=zone, after=after, count=5), repeats))
        worst = max(worst, (best, expression, zone_name))
    return SampleWorst(valid, rejected, *worst, *worst_reject)
