"""Which CSE engines a request may name: from CSE_ENGINES, else CSE's engine list, else any id.

The engine list from CSE is cached briefly: the modal's engine picker asks for it on every
keystroke, and engines are created far less often than that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.cse import CseError, CseUnavailable, Engine
from bot.iam import IamError
from bot.settings import ENGINE_ID

log = logging.getLogger("bot.slack.engines")

LIST_TTL = 60.0
LIST_TIMEOUT = 2.0
_USABLE = {"", "available", "running", "normal", "active"}


def usable(engine: Engine) -> bool:
    """A backup policy needs a running engine: AVAILABLE / running, in any case (an engine
    without a status, e.g. a configured one, is taken as usable)."""
    return engine.status.strip().lower() in _USABLE


class EngineRefused(ValueError):
    """The engine text names no usable engine; str(e) says why and what to give instead."""


class EngineSource(StrEnum):
    CONFIGURED = "configured"  # CSE_ENGINES: a static select
    LISTED = "listed"  # CSE's engine list (a project id is known): an external select
    TYPED = "typed"  # neither: a text input for the engine id


@dataclass(frozen=True)
class EngineChoice:
    id: str
    name: str

    @property
    def label(self) -> str:
        return self.name if self.name == self.id else f"{self.name} ({self.id})"


EngineLister = Callable[[str], Awaitable[list[Engine]]]


class EngineCatalog:
    def __init__(
        self,
        configured: dict[str, str],
        *,
        lister: EngineLister | None = None,
        project_id: Callable[[], str | None] = lambda: None,
        ttl: float = LIST_TTL,
    ) -> None:
        self._configured = dict(configured)
        self._lister = lister
        self._project_id = project_id
        self._ttl = ttl
        self._cache: tuple[float, str, list[Engine]] | None = None
        self._lock = asyncio.Lock()

    @property
    def source(self) -> EngineSource:
        if self._configured:
            return EngineSource.CONFIGURED
        if self._lister is not None and self._project_id():
            return EngineSource.LISTED
        return EngineSource.TYPED

    @property
    def configured(self) -> dict[str, str]:
        return dict(self._configured)

    async def listed(self) -> list[Engine]:
        """CSE's engines for the project (cached). Raises CseError / CseUnavailable / IamError."""
        project_id = self._project_id()
        if self._lister is None or not project_id:
            return []
        async with self._lock:
            cached = self._cache
            if cached and cached[1] == project_id and time.monotonic() - cached[0] < self._ttl:
                return cached[2]
            async with asyncio.timeout(LIST_TIMEOUT):
                engines = await self._lister(project_id)
            self._cache = (time.monotonic(), project_id, engines)
            return engines

    async def search(self, query: str, limit: int = 100) -> list[Engine]:
        """Engines whose name or id contains `query` (case-insensitive), for the picker."""
        if self.source is EngineSource.CONFIGURED:
            engines = [
                Engine(id=i, name=n, type="", status="") for n, i in self._configured.items()
            ]
        else:
            try:
                engines = await self.listed()
            except (CseError, CseUnavailable, IamError, TimeoutError) as exc:
                log.warning("engine list unavailable: %s", exc)
                return []
        needle = query.strip().lower()
        found = [e for e in engines if needle in e.name.lower() or needle in e.id.lower()]
        return sorted(found, key=lambda e: (e.name.lower(), e.id))[:limit]

    async def resolve(self, text: str) -> EngineChoice:
        """An engine by configured name or by id. Raises EngineRefused with the reason."""
        text = text.strip()
        source = self.source
        if source is EngineSource.CONFIGURED:
            return self._resolve_configured(text)
        if source is EngineSource.LISTED:
            try:
                engines = await self.listed()
            except (CseError, CseUnavailable, IamError, TimeoutError) as exc:
                # CSE cannot list engines right now: an id is still usable as it is.
                log.warning("engine list unavailable, taking %r as an engine id: %s", text, exc)
                return self._resolve_typed(text)
            return self._resolve_listed(text, engines)
        return self._resolve_typed(text)

    def _resolve_configured(self, text: str) -> EngineChoice:
        if text in self._configured:
            return EngineChoice(id=self._configured[text], name=text)
        for name, engine_id in self._configured.items():
            if text == engine_id or text.lower() == name.lower():
                return EngineChoice(id=engine_id, name=name)
        names = ", ".join(f"`{n}`" for n in self._configured)
        raise EngineRefused(f"Unknown engine {_shown(text)}; choose one of {names}.")

    @staticmethod
    def _resolve_listed(text: str, engines: list[Engine]) -> EngineChoice:
        match = next((e for e in engines if e.id == text), None)
        if match is None:
            named = [e for e in engines if e.name.lower() == text.lower()]
            if len(named) > 1:
                raise EngineRefused(
                    f"More than one engine is called {_shown(text)}; give its id instead."
                )
            match = named[0] if named else None
        if match is None:
            raise EngineRefused(f"CSE has no engine {_shown(text)} in this project.")
        if not usable(match):
            raise EngineRefused(
                f"Engine {_shown(match.name or match.id)} is {match.status}, not available; "
                "a backup policy needs a running engine."
            )
        return EngineChoice(id=match.id, name=match.name or match.id)

    @staticmethod
    def _resolve_typed(text: str) -> EngineChoice:
        if not ENGINE_ID.match(text):
            raise EngineRefused(
                f"{_shown(text)} is not an engine id (letters, digits, `-` and `_`, "
                "as shown in the CSE console)."
            )
        return EngineChoice(id=text, name=text)


def _shown(text: str) -> str:
    return "`" + text[:64].replace("`", "ˋ") + "`"
