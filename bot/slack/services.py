"""What the listeners need, built once per app by `build_app` and handed to each `register`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.core.requests import BackupRequest, Draft
from bot.flow import BackupFlow
from bot.settings import Settings
from bot.slack.directory import SlackDirectory
from bot.slack.engines import EngineCatalog, EngineChoice
from bot.slack.form import FormInput
from bot.slack.views import form_view


@dataclass(frozen=True)
class Services:
    settings: Settings
    flow: BackupFlow
    catalog: EngineCatalog
    directory: SlackDirectory
    clock: Callable[[], datetime]

    def form(
        self,
        channel: str | None,
        given: FormInput | None = None,
        engine: EngineChoice | None = None,
    ) -> dict[str, object]:
        """The request form for `channel`, prefilled with `given` (and the engine chosen)."""
        return form_view(
            channel=channel,
            source=self.catalog.source,
            configured=self.catalog.configured,
            zone=self.settings.zone,
            given=given,
            engine=engine,
            require_reason=self.settings.require_reason,
        )

    def form_from(self, source: Draft | BackupRequest) -> dict[str, object]:
        """The form prefilled from a draft (Edit) or a failed request (Edit and resubmit)."""
        given = FormInput(
            engine=source.engine_id,
            schedule=source.schedule,
            reserve=str(source.reserve) if source.reserve is not None else None,
            max_files=str(source.max_files) if source.max_files is not None else None,
            reason=source.reason or None,
        )
        channel = source.channel
        engine = EngineChoice(id=source.engine_id, name=source.engine_name)
        return self.form(channel, given, engine)
