"""The request form's values and their validation, shared by the modal and the quick path.

Raw text goes in (from the modal's inputs or from `key=value` arguments); either a valid
`FormValues` comes out, or one message per bad field, keyed by the field so the modal can put it
under the right input and the quick path can name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.core.requests import Draft, new_draft_id
from bot.core.schedule import Preview, ScheduleError, preview
from bot.core.schedule_builder import parse_time, weekly_expression
from bot.slack.engines import EngineCatalog, EngineChoice, EngineRefused

MAX_REASON = 500
MAX_NUMBER = 100_000


class Field(StrEnum):
    ENGINE = "engine"
    SCHEDULE = "schedule"
    RESERVE = "reserve"
    MAX_FILES = "max_files"
    REASON = "reason"
    # the schedule builder (modal only)
    SCHEDULE_DAYS = "schedule_days"
    SCHEDULE_TIME = "schedule_time"


LABELS: dict[Field, str] = {
    Field.ENGINE: "Engine",
    Field.SCHEDULE: "Schedule (cron)",
    Field.RESERVE: "Retention days",
    Field.MAX_FILES: "Max files",
    Field.REASON: "Reason",
    Field.SCHEDULE_DAYS: "Days of the week",
    Field.SCHEDULE_TIME: "Time",
}


class ScheduleMode(StrEnum):
    """How the modal's schedule is given: typed as cron, or built from days and a time."""

    CRON = "cron"
    DAYS = "days"


@dataclass(frozen=True)
class FormInput:
    """What was typed or picked, as text; None for a field that was not given at all."""

    engine: str | None = None
    schedule: str | None = None
    reserve: str | None = None
    max_files: str | None = None
    reason: str | None = None
    # The schedule builder: day-of-week numbers ticked ("1" = Monday, "0" = Sunday), HH:MM.
    schedule_mode: ScheduleMode = ScheduleMode.CRON
    schedule_days: tuple[str, ...] | None = None
    schedule_time: str | None = None

    @property
    def uses_builder(self) -> bool:
        """The builder decides the schedule: chosen as the schedule type, or (lenient) the cron
        input left empty while days and a time are picked."""
        if self.schedule_mode is ScheduleMode.DAYS:
            return True
        return (
            not (self.schedule or "").strip()
            and bool(self.schedule_days)
            and bool((self.schedule_time or "").strip())
        )

    def complete(self, *, require_reason: bool) -> bool:
        """All values given, so the quick path can skip the form: engine, schedule, retention
        days and max files (the reason too when it is required). Otherwise the form opens,
        prefilled with what was given."""
        given = [self.engine, self.schedule, self.reserve, self.max_files]
        if require_reason:
            given.append(self.reason)
        return all(value is not None and value.strip() for value in given)


@dataclass(frozen=True)
class FormValues:
    engine: EngineChoice
    schedule: str  # the normalised 5-field expression
    reserve: int | None
    max_files: int | None
    reason: str
    preview: Preview
    built: bool = False  # the schedule builder made the expression

    def draft(self, *, user: str, channel: str, now: datetime) -> Draft:
        """The validated values as a draft waiting on its confirmation."""
        return Draft(
            id=new_draft_id(),
            user=user,
            channel=channel,
            engine_id=self.engine.id,
            engine_name=self.engine.name,
            schedule=self.schedule,
            reserve=self.reserve,
            max_files=self.max_files,
            reason=self.reason,
            created_at=now,
        )


@dataclass(frozen=True)
class Validation:
    values: FormValues | None
    errors: dict[Field, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleOutcome:
    """The schedule the form gives: its preview, or one message per bad schedule input.

    `built` says the builder made it (so the person sees the expression it produced); `blank`
    says nothing was given yet (the live preview shows a hint, not an error)."""

    preview: Preview | None
    errors: dict[Field, str] = field(default_factory=dict)
    built: bool = False
    blank: bool = False


def schedule_outcome(
    given: FormInput,
    *,
    zone: ZoneInfo,
    now: datetime,
    reserve: int | None = None,
    max_files: int | None = None,
    count: int = 5,
) -> ScheduleOutcome:
    """The form's schedule, from the builder when it decides (see `uses_builder`), else from
    the cron input. Used on submit and for the live preview."""
    if given.uses_builder:
        errors: dict[Field, str] = {}
        days = tuple(given.schedule_days or ())
        time = (given.schedule_time or "").strip()
        if not days:
            errors[Field.SCHEDULE_DAYS] = "Tick at least one day of the week."
        if not time:
            errors[Field.SCHEDULE_TIME] = "Pick the time of day the backup runs."
        else:
            try:
                parse_time(time)
            except ScheduleError as exc:
                errors[Field.SCHEDULE_TIME] = str(exc)
        if errors:
            return ScheduleOutcome(None, errors, built=True, blank=not days and not time)
        try:
            expression = weekly_expression(days, time)
            result = preview(
                expression, zone=zone, after=now, count=count, reserve=reserve, max_files=max_files
            )
        except ScheduleError as exc:
            return ScheduleOutcome(None, {Field.SCHEDULE_DAYS: str(exc)}, built=True)
        return ScheduleOutcome(result, built=True)

    text = (given.schedule or "").strip()
    if not text:
        return ScheduleOutcome(
            None,
            {Field.SCHEDULE: "Give a cron expression, e.g. `0 2 * * *` for 02:00 every day."},
            blank=True,
        )
    if len(text) > 200:
        return ScheduleOutcome(
            None, {Field.SCHEDULE: "A cron expression is at most 200 characters long."}
        )
    try:
        result = preview(
            text, zone=zone, after=now, count=count, reserve=reserve, max_files=max_files
        )
    except ScheduleError as exc:
        return ScheduleOutcome(None, {Field.SCHEDULE: str(exc)})
    return ScheduleOutcome(result)


def _quoted(text: str) -> str:
    return "`" + text.strip()[:40].replace("`", "ˋ") + "`"


def _number(text: str | None, what: str) -> tuple[int | None, str | None]:
    if text is None or not text.strip():
        return None, None
    cleaned = text.strip().replace("_", "")
    if not cleaned.isascii() or not cleaned.isdigit():
        return None, f"{what} must be a whole number of 1 or more, not {_quoted(text)}."
    value = int(cleaned)
    if value < 1:
        return None, f"{what} must be 1 or more."
    if value > MAX_NUMBER:
        return None, f"{what} must be at most {MAX_NUMBER:,}."
    return value, None


async def validate(
    given: FormInput,
    *,
    catalog: EngineCatalog,
    zone: ZoneInfo,
    now: datetime,
    require_reason: bool,
) -> Validation:
    errors: dict[Field, str] = {}

    engine: EngineChoice | None = None
    if not (given.engine or "").strip():
        errors[Field.ENGINE] = "Choose the engine the policy is for."
    else:
        try:
            engine = await catalog.resolve((given.engine or "").strip())
        except EngineRefused as exc:
            errors[Field.ENGINE] = str(exc)

    reserve, problem = _number(given.reserve, "Retention days")
    if problem:
        errors[Field.RESERVE] = problem
    max_files, problem = _number(given.max_files, "Max files")
    if problem:
        errors[Field.MAX_FILES] = problem

    schedule = schedule_outcome(given, zone=zone, now=now, reserve=reserve, max_files=max_files)
    errors.update(schedule.errors)
    result = schedule.preview

    reason = (given.reason or "").strip()
    if require_reason and not reason:
        errors[Field.REASON] = "A reason is required (an incident or change ticket, say)."
    elif len(reason) > MAX_REASON:
        errors[Field.REASON] = f"Keep the reason under {MAX_REASON} characters."

    if errors or engine is None or result is None:
        return Validation(values=None, errors=errors)
    return Validation(
        values=FormValues(
            engine=engine,
            schedule=result.expression,
            reserve=reserve,
            max_files=max_files,
            reason=reason,
            preview=result,
            built=schedule.built,
        )
    )
