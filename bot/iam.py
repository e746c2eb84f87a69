"""Service tokens for the CSE API: a static token, or one fetched and refreshed from Huawei IAM.

IAM tokens live 24 hours. The provider keeps one, renews it an hour before it expires, and lets
every concurrent caller share a single renewal. Nothing here ever prints a password or a token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from bot.settings import ConfigError, Settings

log = logging.getLogger("bot.iam")

# Renew this long before the token's own expiry, so a slow CSE call never carries a dying token.
REFRESH_MARGIN = 3600.0
# When a renewal fails, the current token is still used up to this close to its expiry...
USABLE_MARGIN = 60.0
# ...and IAM is asked again at most this often meanwhile.
RENEW_RETRY_INTERVAL = 30.0


class _RedactSubjectToken(logging.Filter):
    """httpcore's DEBUG trace prints response headers, IAM's X-Subject-Token among them."""

    _pattern = re.compile(r"(X-Subject-Token['\"]?,\s*b?['\"])[^'\"]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "subject-token" in record.msg.lower():
            record.msg = self._pattern.sub(r"\1***", record.msg)
        return True


def _install_redaction() -> None:
    for name in ("httpcore.http11", "httpcore.http2"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactSubjectToken) for f in logger.filters):
            logger.addFilter(_RedactSubjectToken())


_install_redaction()


class IamError(Exception):
    """No service token could be obtained. The message says why, without any secret in it."""


class TokenProvider(Protocol):
    async def token(self) -> str:
        """A token that is valid now (fetched or renewed when needed)."""
        ...

    async def refresh(self, stale: str | None = None) -> str:
        """A new token, unless another caller already replaced `stale`; then that one."""
        ...

    @property
    def project_id(self) -> str | None: ...

    @property
    def expires_at(self) -> datetime | None: ...

    async def aclose(self) -> None: ...


class StaticTokenProvider:
    """CSE_AUTH_TOKEN: one token, never renewed (a 401 then surfaces as an error)."""

    def __init__(self, token: SecretStr, project_id: str | None = None) -> None:
        self._token = token
        self._project_id = project_id

    def __repr__(self) -> str:
        return f"StaticTokenProvider(project_id={self._project_id!r})"

    async def token(self) -> str:
        return self._token.get_secret_value()

    async def refresh(self, stale: str | None = None) -> str:
        return self._token.get_secret_value()

    @property
    def project_id(self) -> str | None:
        return self._project_id

    @property
    def expires_at(self) -> datetime | None:
        return None

    async def aclose(self) -> None:
        return None


class IamTokenProvider:
    """Fetches a project-scoped token with the service account's password, and keeps it fresh."""

    def __init__(
        self,
        endpoint: str,
        domain: str,
        user: str,
        password: SecretStr,
        project_id: str | None = None,
        project_name: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if not (project_id or project_name):
            raise ValueError("IamTokenProvider needs a project id or a project name")
        self._endpoint = endpoint.rstrip("/")
        self._domain = domain
        self._user = user
        self._password = password
        self._configured_project_id = project_id
        self._project_name = project_name
        self._clock = clock
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
        )
        self._lock = asyncio.Lock()
        self._token: SecretStr | None = None
        self._expires: float | None = None  # epoch seconds
        self._token_project_id: str | None = None
        self._retry_at = 0.0  # clock() before which a failed renewal is not repeated

    def __repr__(self) -> str:
        return (
            f"IamTokenProvider(endpoint={self._endpoint!r}, domain={self._domain!r}, "
            f"user={self._user!r}, project_id={self.project_id!r})"
        )

    @property
    def project_id(self) -> str | None:
        return self._configured_project_id or self._token_project_id

    @property
    def expires_at(self) -> datetime | None:
        if self._expires is None:
            return None
        return datetime.fromtimestamp(self._expires, tz=UTC)

    def _fresh(self) -> str | None:
        """The cached token when it is more than REFRESH_MARGIN away from expiry."""
        if self._token is None or self._expires is None:
            return None
        if self._clock() >= self._expires - REFRESH_MARGIN:
            return None
        return self._token.get_secret_value()

    async def token(self) -> str:
        cached = self._fresh()
        if cached is not None:
            return cached
        async with self._lock:
            # Another caller may have renewed it while this one waited for the lock.
            cached = self._fresh()
            if cached is not None:
                return cached
            usable = self._usable()
            if usable is not None and self._clock() < self._retry_at:
                return usable  # IAM failed a moment ago; the old token still works
            try:
                return await self._fetch()
            except IamError as exc:
                # Renewal starts an hour early, so IAM trouble need not stop CSE calls yet.
                if usable is None:
                    raise
                self._retry_at = self._clock() + RENEW_RETRY_INTERVAL
                log.warning("IAM token renewal failed, using the current token: %s", exc)
                return usable

    def _usable(self) -> str | None:
        """The cached token while it is at least USABLE_MARGIN away from expiry."""
        if self._token is None or self._expires is None:
            return None
        if self._clock() >= self._expires - USABLE_MARGIN:
            return None
        return self._token.get_secret_value()

    async def refresh(self, stale: str | None = None) -> str:
        async with self._lock:
            cached = self._fresh()
            if cached is not None and stale is not None and cached != stale:
                return cached
            return await self._fetch()

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- the IAM call ----------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        project: dict[str, str] = (
            {"id": self._configured_project_id}
            if self._configured_project_id
            else {"name": self._project_name or ""}
        )
        return {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._user,
                            "password": self._password.get_secret_value(),
                            "domain": {"name": self._domain},
                        }
                    },
                },
                "scope": {"project": project},
            }
        }

    def _scrub(self, text: str) -> str:
        """Remove the password and any token from text that came back from the server."""
        for secret in (self._password, self._token):
            value = secret.get_secret_value() if secret is not None else ""
            if value:
                text = text.replace(value, "***")
        return text

    async def _fetch(self) -> str:
        url = f"{self._endpoint}/v3/auth/tokens"
        started = time.monotonic()
        try:
            response = await self._client.post(
                url,
                json=self._body(),
                headers={"Content-Type": "application/json;charset=UTF-8"},
            )
        except httpx.TimeoutException as exc:
            log.warning("IAM token request timed out after %.3fs", time.monotonic() - started)
            raise IamError(
                f"IAM did not answer in time at {self._endpoint} ({type(exc).__name__}); "
                "check IAM_ENDPOINT and the network path to IAM"
            ) from None
        except httpx.HTTPError as exc:
            log.warning("IAM unreachable: %s", type(exc).__name__)
            raise IamError(
                f"IAM is unreachable at {self._endpoint} ({type(exc).__name__}); "
                "check IAM_ENDPOINT and the network path to IAM"
            ) from None
        duration = time.monotonic() - started
        log.info("IAM token request: HTTP %s in %.3fs", response.status_code, duration)

        if response.status_code == 401:
            raise IamError(
                f"IAM refused the service account (HTTP 401) for user {self._user!r} in domain "
                f"{self._domain!r}: check IAM_DOMAIN, IAM_USER and IAM_PASSWORD"
            )
        if response.status_code != 201:
            detail = self._scrub(_error_text(response))
            raise IamError(
                f"IAM answered HTTP {response.status_code} instead of 201 when asked for a "
                f"token{': ' + detail if detail else ''}; check the IAM_* settings"
            )
        token = str(response.headers.get("X-Subject-Token", "")).strip()
        if not token:
            raise IamError("IAM answered 201 without an X-Subject-Token header; unexpected answer")
        try:
            data = response.json()
            info = data["token"]
            expires = _parse_iso(str(info["expires_at"]))
        except (ValueError, KeyError, TypeError):
            raise IamError(
                "IAM answered 201 without a readable token.expires_at; unexpected answer"
            ) from None
        project = info.get("project") if isinstance(info, dict) else None
        project_id = project.get("id") if isinstance(project, dict) else None

        self._token = SecretStr(token)
        self._expires = expires
        self._retry_at = 0.0
        if isinstance(project_id, str) and project_id:
            self._token_project_id = project_id
        if self.project_id is None:
            raise IamError("IAM token carries no project id; set IAM_PROJECT_ID")
        log.info(
            "IAM token obtained for project %s, expires at %s",
            self.project_id,
            datetime.fromtimestamp(expires, tz=UTC).isoformat(),
        )
        return token


def _parse_iso(text: str) -> float:
    """ISO 8601 (IAM writes `2024-06-01T12:00:00.000000Z`) to epoch seconds; naive means UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _error_text(response: httpx.Response) -> str:
    """A short reason from an IAM error body (`{"error": {"message"}}` and friends)."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(data, dict):
        inner = data.get("error")
        source = inner if isinstance(inner, dict) else data
        for key in ("message", "error_msg", "errorMessage"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    return ""


def token_provider_from_settings(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> TokenProvider:
    """CSE_AUTH_TOKEN when set, else the IAM service account."""
    if settings.cse_auth_token is not None:
        return StaticTokenProvider(settings.cse_auth_token, settings.iam_project_id)
    if (
        settings.iam_endpoint
        and settings.iam_domain
        and settings.iam_user
        and settings.iam_password is not None
    ):
        return IamTokenProvider(
            settings.iam_endpoint,
            settings.iam_domain,
            settings.iam_user,
            settings.iam_password,
            settings.iam_project_id,
            settings.iam_project_name,
            transport=transport,
            connect_timeout=float(settings.cse_connect_timeout),
        )
    raise ConfigError(
        "No CSE service token source: set CSE_AUTH_TOKEN, or IAM_ENDPOINT with IAM_DOMAIN, "
        "IAM_USER, IAM_PASSWORD and IAM_PROJECT_ID (or IAM_PROJECT_NAME)"
    )
