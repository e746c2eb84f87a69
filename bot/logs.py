"""Logging: one JSON object per line (LOG_FORMAT=json, the default) or readable lines (console).

Known secret values (tokens, passwords, the signing secret) are scrubbed from every line as a
last line of defence; nothing should log them in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from bot.settings import Settings

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_QUIET = ("slack_bolt", "slack_sdk", "aiohttp.access", "asyncio", "httpx", "httpcore")


class Scrubber(logging.Filter):
    """Replaces known secret values in the rendered line with ***."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class KnownNoise(logging.Filter):
    """Drops framework warnings that are expected with this bot's set-up and would only send
    operators looking for a problem that is not there."""

    # Bolt reads SLACK_BOT_TOKEN from the environment by itself; the bot hands it a client (and
    # authorizes with the token), so this warning comes on every start.
    MESSAGES = frozenset({"As you gave `client` as well, `token` will be unused."})

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "bot.bolt" and record.getMessage() in self.MESSAGES)


class JsonFormatter(logging.Formatter):
    def __init__(self, scrubber: Scrubber | None = None) -> None:
        super().__init__()
        self._scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = json.dumps(entry, default=str, ensure_ascii=False)
        return self._scrubber.scrub(line) if self._scrubber else line


class ConsoleFormatter(logging.Formatter):
    def __init__(self, scrubber: Scrubber | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {
            k: v
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_") and v is not None
        }
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return self._scrubber.scrub(line) if self._scrubber else line


class Role(logging.Filter):
    """Marks every line with the process that wrote it (`role`), when a replica has several."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        return True


def secret_values(settings: Settings) -> list[str]:
    found = []
    for value in vars(settings).values():
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    return found


def configure_logging(settings: Settings, stream: Any = None, role: str | None = None) -> None:
    """Log lines to `stream` (stderr) in LOG_FORMAT; `role` marks a helper process's lines (the
    follow-up worker's say `"role": "worker"`)."""
    scrubber = Scrubber(secret_values(settings))
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter(scrubber) if settings.log_format == "json" else ConsoleFormatter(scrubber)
    )
    handler.setFormatter(formatter)
    handler.addFilter(KnownNoise())
    if role is not None:
        handler.addFilter(Role(role))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)
