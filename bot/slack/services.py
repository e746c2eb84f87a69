"""What the listeners need, built once per app by `build_app` and handed to each `register`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.core.requests import BackupRequest, Draft
from bot.core.schedule_builder import days_and_time
from bot.flow import BackupFlow
from bot.settings import Settings
from bot.slack.directory import SlackDirectory
from bot.slack.engines import EngineCatalog, EngineChoice
from bot.slack.followups import FollowUps
from bot.slack.form import FormInput, schedule_outcome
from bot.slack.home import AppHome
from bot.slack.previews import PreviewVersions
from bot.slack.views import FormState, form_view


@dataclass(frozen=True)
class Services:
    settings: Settings
    flow: BackupFlow
    catalog: EngineCatalog
    directory: SlackDirectory
    clock: Callable[[], datetime]
    home: AppHome
    followups: FollowUps
    previews: PreviewVersions = field(default_factory=PreviewVersions)

    def form(
        self,
        channel: str | None,
        given: FormInput | None = None,
        engine: EngineChoice | None = None,
        picked_channel: str | None = None,
    ) -> dict[str, object]:
        """The request form for `channel`, prefilled with `given` (and the engine chosen), with
        the live preview of the schedule it holds."""
        given = given or FormInput()
        outcome = None
        if (given.schedule or "").strip() or given.uses_builder:
            outcome = schedule_outcome(given, zone=self.settings.zone, now=self.clock())
        return form_view(
            channel=channel,
            source=self.catalog.source,
            configured=self.catalog.configured,
            zone=self.settings.zone,
            given=given,
            engine=engine,
            require_reason=self.settings.require_reason,
            outcome=outcome,
            picked_channel=picked_channel,
        )

    def form_again(self, channel: str | None, state: FormState) -> dict[str, object]:
        """The form rebuilt from what it holds now (a live-preview update)."""
        return self.form(channel, state.given, state.engine, picked_channel=state.channel)

    def form_from(self, source: Draft | BackupRequest) -> dict[str, object]:
        """The form prefilled from a draft (Edit) or a failed request (Edit and resubmit).

        The cron input holds the expression; when the builder could have made it, the builder
        shows the same days and time, so switching to Days and time starts from it."""
        built = days_and_time(source.schedule)
        given = FormInput(
            engine=source.engine_id,
            schedule=source.schedule,
            reserve=str(source.reserve) if source.reserve is not None else None,
            max_files=str(source.max_files) if source.max_files is not None else None,
            reason=source.reason or None,
            schedule_days=tuple(str(d) for d in sorted(built[0])) if built else None,
            schedule_time=built[1] if built else None,
        )
        channel = source.channel
        engine = EngineChoice(id=source.engine_id, name=source.engine_name)
        return self.form(channel, given, engine)
