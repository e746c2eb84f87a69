"""Configuration: one typed object read from the environment or a `.env` file (CONTRACT §3).

Every setting is validated at start-up. A bad value stops the process with one message that names
the variable and shows a valid example; secrets are `SecretStr` so they never print.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
ENGINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENGINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

# What a valid value looks like, per variable: shown whenever a value is refused.
EXAMPLES: dict[str, str] = {
    "SLACK_BOT_TOKEN": "SLACK_BOT_TOKEN=xoxb-1234-5678-abcdef",
    "SLACK_SIGNING_SECRET": "SLACK_SIGNING_SECRET=8f14e45fceea167a5a36dedd4bea2543",
    "SLACK_APP_TOKEN": "SLACK_APP_TOKEN=xapp-1-A0123-4567-abcdef",
    "SLACK_API_URL": "SLACK_API_URL=https://slack.com/api/",
    "PORT": "PORT=3000",
    "REDIS_URL": "REDIS_URL=redis://localhost:6379/0 (or rediss://, unix:///path/redis.sock)",
    "REDIS_PREFIX": "REDIS_PREFIX=cse-backup",
    "CSE_ENDPOINT": "CSE_ENDPOINT=https://cse.ap-southeast-1.myhuaweicloud.com",
    "CSE_AUTH_TOKEN": "CSE_AUTH_TOKEN=MIIZ... (a service token), or the IAM_* settings",
    "IAM_ENDPOINT": "IAM_ENDPOINT=https://iam.ap-southeast-1.myhuaweicloud.com",
    "IAM_DOMAIN": "IAM_DOMAIN=my-account",
    "IAM_USER": "IAM_USER=cse-backup-bot",
    "IAM_PASSWORD": "IAM_PASSWORD=<the service account's password>",
    "IAM_PROJECT_ID": "IAM_PROJECT_ID=0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "IAM_PROJECT_NAME": "IAM_PROJECT_NAME=ap-southeast-1",
    "CSE_ENTERPRISE_PROJECT_ID": "CSE_ENTERPRISE_PROJECT_ID=0",
    "CSE_ENGINES": "CSE_ENGINES=prod=6f3c1e2a-0b1d-4c5e-9f00-123456789abc,staging=0d9e...",
    "CSE_SCHEDULE_TIMEZONE": "CSE_SCHEDULE_TIMEZONE=Asia/Singapore (an IANA zone name)",
    "CSE_CONNECT_TIMEOUT": "CSE_CONNECT_TIMEOUT=5s",
    "CSE_TIMEOUT": "CSE_TIMEOUT=30s",
    "APPROVERS": "APPROVERS=U012AB3CD,S0614TZR7 (user ids U…/W…, user group ids S…)",
    "REQUESTERS": "REQUESTERS=U012AB3CD,S0614TZR7 (user ids U…/W…, user group ids S…)",
    "ALLOWED_CHANNELS": "ALLOWED_CHANNELS=C0123ABCD,G0456EFGH",
    "APPROVAL_TTL": "APPROVAL_TTL=4h (90s, 30m, 4h, 1d)",
    "REQUIRED_APPROVALS": "REQUIRED_APPROVALS=1",
    "APPROVAL_CHANNEL": "APPROVAL_CHANNEL=C0123ABCD",
    "APPROVAL_REMINDERS": "APPROVAL_REMINDERS=30m,2h (or 'off')",
    "REQUIRE_REASON": "REQUIRE_REASON=true",
    "BREAK_GLASS_USERS": "BREAK_GLASS_USERS=U012AB3CD,W0456EFGH",
    "FOLLOW_UP_WORKER": "FOLLOW_UP_WORKER=false",
    "LOG_LEVEL": "LOG_LEVEL=INFO (DEBUG, INFO, WARNING, ERROR)",
    "LOG_FORMAT": "LOG_FORMAT=json (or console)",
}


class ConfigError(Exception):
    """A setting is missing or malformed. The message names the variable and a valid example."""


def parse_duration(value: str) -> int:
    """`90s`, `30m`, `4h`, `1d`, `1h30m` or plain seconds, to whole seconds (> 0)."""
    text = value.strip().lower()
    if text.isdigit():
        seconds = int(text)
    else:
        pos, seconds = 0, 0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{value!r} is not a duration")
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """The reverse of parse_duration, for people: 14400 -> '4h', 5400 -> '1h30m'."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _ids(value: Any, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    items = _split(value)
    for item in items:
        if not pattern.match(item):
            raise ValueError(f"{item!r} is not {what}")
    return tuple(dict.fromkeys(items))


IdList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    port: int = Field(default=3000, ge=1, le=65535)

    redis_url: str | None = None
    redis_prefix: str = "cse-backup"
    follow_up_worker: bool = True

    cse_endpoint: str | None = None
    cse_auth_token: SecretStr | None = None
    iam_endpoint: str | None = None
    iam_domain: str | None = None
    iam_user: str | None = None
    iam_password: SecretStr | None = None
    iam_project_id: str | None = None
    iam_project_name: str | None = None
    cse_enterprise_project_id: str = "0"
    cse_engines: Annotated[tuple[tuple[str, str], ...], NoDecode] = ()
    cse_schedule_timezone: str = "UTC"
    cse_connect_timeout: Annotated[int, NoDecode] = 5
    cse_timeout: Annotated[int, NoDecode] = 30

    approvers: IdList = ()
    requesters: IdList = ()
    allowed_channels: IdList = ()
    approval_ttl: Annotated[int, NoDecode] = 4 * 3600
    required_approvals: int = Field(default=1, ge=1, le=10)
    approval_channel: str | None = None
    approval_reminders: Annotated[tuple[int, ...], NoDecode] = (30 * 60, 2 * 3600)
    require_reason: bool = False
    break_glass_users: IdList = ()

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    # --- parsing of the text forms -------------------------------------------------------------

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case(cls, v: Any, info: Any) -> Any:
        if isinstance(v, str):
            return v.strip().upper() if info.field_name == "log_level" else v.strip().lower()
        return v

    @field_validator("approval_ttl", "cse_connect_timeout", "cse_timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(str(v)) if isinstance(v, str) else v

    @field_validator("approval_reminders", mode="before")
    @classmethod
    def _reminders(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v.strip().lower() in {"off", "none", "0", "false"}:
                return ()
            return tuple(sorted({parse_duration(p) for p in _split(v)}))
        return v

    @field_validator("approvers", "requesters", mode="before")
    @classmethod
    def _principals(cls, v: Any) -> Any:
        items = _split(v)
        for item in items:
            if not (USER_ID.match(item) or GROUP_ID.match(item)):
                raise ValueError(f"{item!r} is not a Slack user id (U…/W…) or user group id (S…)")
        return tuple(dict.fromkeys(items))

    @field_validator("break_glass_users", mode="before")
    @classmethod
    def _users(cls, v: Any) -> Any:
        return _ids(v, USER_ID, "a Slack user id (U… or W…)")

    @field_validator("allowed_channels", mode="before")
    @classmethod
    def _channels(cls, v: Any) -> Any:
        return _ids(v, CHANNEL_ID, "a Slack channel id (C…, G… or D…)")

    @field_validator("approval_channel", mode="before")
    @classmethod
    def _channel(cls, v: Any) -> Any:
        if isinstance(v, str) and not CHANNEL_ID.match(v.strip()):
            raise ValueError(f"{v!r} is not a Slack channel id (C… or G…)")
        return v.strip() if isinstance(v, str) else v

    @field_validator("cse_engines", mode="before")
    @classmethod
    def _engines(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        engines: dict[str, str] = {}
        for item in _split(v):
            name, sep, engine_id = (s.strip() for s in item.partition("="))
            if not sep or not ENGINE_NAME.match(name) or not ENGINE_ID.match(engine_id):
                raise ValueError(f"{item!r} is not name=engineId")
            if name in engines:
                raise ValueError(f"engine name {name!r} is given twice")
            engines[name] = engine_id
        return tuple(engines.items())

    @field_validator("cse_schedule_timezone", mode="before")
    @classmethod
    def _zone(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                ZoneInfo(v.strip())
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{v!r} is not an IANA time zone name") from None
            return v.strip()
        return v

    @field_validator("slack_api_url", "cse_endpoint", "iam_endpoint", mode="before")
    @classmethod
    def _url(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            if not re.match(r"^https?://[^\s/]+", v):
                raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, v: Any) -> Any:
        if isinstance(v, str) and not re.match(r"^(redis|rediss|unix)://", v.strip()):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v.strip() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _iam_complete(self) -> Settings:
        if self.iam_endpoint:
            for name in ("iam_domain", "iam_user", "iam_password"):
                if not getattr(self, name):
                    raise ValueError(f"{name.upper()} is required when IAM_ENDPOINT is set")
            if not (self.iam_project_id or self.iam_project_name):
                raise ValueError(
                    "IAM_PROJECT_ID or IAM_PROJECT_NAME is required when IAM_ENDPOINT is set"
                )
        return self

    # --- derived values --------------------------------------------------------------------------

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.cse_schedule_timezone)

    @property
    def engines(self) -> dict[str, str]:
        return dict(self.cse_engines)

    @property
    def uses_iam(self) -> bool:
        return self.iam_endpoint is not None and self.cse_auth_token is None

    @property
    def project_id(self) -> str | None:
        return self.iam_project_id

    def require_for_run(self) -> None:
        """The settings `run` cannot start without; raises ConfigError naming the first missing."""
        missing = []
        if not self.slack_bot_token:
            missing.append("SLACK_BOT_TOKEN")
        if not self.socket_mode and not self.slack_signing_secret:
            missing.append("SLACK_SIGNING_SECRET")
        if not self.cse_endpoint:
            missing.append("CSE_ENDPOINT")
        if missing:
            name = missing[0]
            extra = " (HTTP mode; or set SLACK_APP_TOKEN for Socket Mode)" * (
                name == "SLACK_SIGNING_SECRET"
            )
            raise ConfigError(
                f"{name} is not set{extra}; set it in the environment or .env, "
                f"e.g. {EXAMPLES[name]}"
            )
        if not self.cse_auth_token and not self.iam_endpoint:
            raise ConfigError(
                "No CSE service token source: set CSE_AUTH_TOKEN, or IAM_ENDPOINT with IAM_DOMAIN, "
                "IAM_USER, IAM_PASSWORD and IAM_PROJECT_ID (or IAM_PROJECT_NAME)"
            )


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; on any bad value raise ConfigError with one clear line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error.get("loc") or ()
        name = str(loc[0]).upper() if loc else ""
        msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if name and name in EXAMPLES:
            raise ConfigError(f"{name}: {msg}; a valid value looks like {EXAMPLES[name]}") from None
        # Model-level errors already name their variables.
        raise ConfigError(f"Configuration: {msg}") from None
