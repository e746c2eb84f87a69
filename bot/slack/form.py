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

from bot.core.schedule import Preview, ScheduleError, preview
from bot.slack.engines import EngineCatalog, EngineChoice, EngineRefused

MAX_REASON = 500
MAX_NUMBER = 100_000


class Field(StrEnum):
    ENGINE = "engine"
    SCHEDULE = "schedule"
    RESERVE = "reserve"
    MAX_FILES = "max_files"
    REASON = "reason"


LABELS: dict[Field, str] = {
    Field.ENGINE: "Engine",
    Field.SCHEDULE: "Schedule (cron)",
    Field.RESERVE: "Retention days",
    Field.MAX_FILES: "Max files",
    Field.REASON: "Reason",
}


@dataclass(frozen=True)
class FormInput:
    """What was typed or picked, as text; None for a field that was not given at all."""

    engine: str | None = None
    schedule: str | None = None
    reserve: str | None = None
    max_files: str | None = None
    reason: str | None = None

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


@dataclass(frozen=True)
class Validation:
    values: FormValues | None
    errors: dict[Field, str] = field(default_factory=dict)


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

    result: Preview | None = None
    schedule_text = (given.schedule or "").strip()
    if not schedule_text:
        errors[Field.SCHEDULE] = "Give a cron expression, e.g. `0 2 * * *` for 02:00 every day."
    elif len(schedule_text) > 200:
        errors[Field.SCHEDULE] = "A cron expression is at most 200 characters long."
    else:
        try:
            result = preview(
                schedule_text, zone=zone, after=now, count=5, reserve=reserve, max_files=max_files
            )
        except ScheduleError as exc:
            errors[Field.SCHEDULE] = str(exc)

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
        )
    )
