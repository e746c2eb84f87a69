"""The Huawei Cloud CSE API: create a microservice backup policy, list engines (CONTRACT §1, §5).

The create call is not idempotent, so the client is strict about when it may try again:
- the connection never opened (refused, DNS, connect timeout): retried with backoff, and in the
  end `CseUnavailable` (nothing reached CSE; safe to try again);
- the gateway answered 401: the token is renewed once and the call repeated once (the gateway
  refused the first, so nothing was created);
- anything after the request may have left (read timeout, dropped connection, the overall
  deadline, a gateway's 502 or 504): `CseOutcomeUnknown`, never retried; someone must look in
  the CSE console first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from bot.iam import TokenProvider

log = logging.getLogger("bot.cse")

ErrorKind = Literal["http", "auth", "malformed", "unknown"]

_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_AFTER_SEND_ERRORS = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
_CHECK_CONSOLE = "The policy may have been created: check the CSE console before trying again."
# Gateway answers that mean the request may have reached CSE but its answer did not come back.
_GATEWAY_LOST = frozenset({502, 504})


# --- errors ----------------------------------------------------------------------------------


class CseError(Exception):
    """CSE (or its gateway) answered with an error, or with something unreadable.

    `kind`: "http" (an error status), "auth" (401 after a token refresh), "malformed"
    (an answer without a policy id), "unknown" (no answer; see CseOutcomeUnknown).
    """

    def __init__(
        self,
        status: int | None,
        error_code: str,
        error_msg: str,
        detail: str = "",
        *,
        kind: ErrorKind = "http",
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.detail = detail
        self.kind: ErrorKind = kind
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status is not None else ""
        text = f"{self.error_code}{where}: {self.error_msg}"
        return f"{text} — {self.detail}" if self.detail else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error_code={self.error_code!r}, "
            f"error_msg={self.error_msg!r}, detail={self.detail!r}, kind={self.kind!r})"
        )


class CseOutcomeUnknown(CseError):
    """The create request may have reached CSE, but no usable answer came back.

    Never retried automatically. kind "unknown": no answer (timeout, dropped connection);
    kind "malformed": an answer without a policy id.
    """


class CseUnavailable(Exception):
    """CSE could not be reached at all, even after retries. Nothing reached CSE; safe to retry.

    `iam` is True when it was IAM (the service token) that did not come in time."""

    def __init__(self, message: str, *, iam: bool = False) -> None:
        super().__init__(message)
        self.iam = iam


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupPolicy:
    id: str
    engine_id: str
    schedule: str
    reserve: int | None
    max_files: int | None
    created_at: datetime | None
    next_at: datetime | None

    @classmethod
    def from_response(cls, data: dict[str, Any], *, engine_id: str, schedule: str) -> BackupPolicy:
        """Lenient parse of CSE's answer; the engine id and schedule sent fill any gaps."""
        policy_id = data.get("id")
        if policy_id is None or str(policy_id).strip() == "":
            raise ValueError("no policy id")
        return cls(
            id=str(policy_id).strip(),
            engine_id=_text(data.get("engineId")) or engine_id,
            schedule=_text(data.get("schedule")) or schedule,
            reserve=parse_int(data.get("reserve")),
            max_files=parse_int(data.get("maxFiles")),
            created_at=parse_timestamp(data.get("createAt")),
            next_at=parse_timestamp(data.get("nextAt")),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (datetimes as ISO 8601), the inverse of from_dict."""
        return {
            "id": self.id,
            "engine_id": self.engine_id,
            "schedule": self.schedule,
            "reserve": self.reserve,
            "max_files": self.max_files,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "next_at": self.next_at.isoformat() if self.next_at else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupPolicy:
        def moment(value: Any) -> datetime | None:
            return datetime.fromisoformat(value) if isinstance(value, str) and value else None

        return cls(
            id=str(data["id"]),
            engine_id=str(data["engine_id"]),
            schedule=str(data["schedule"]),
            reserve=parse_int(data.get("reserve")),
            max_files=parse_int(data.get("max_files")),
            created_at=moment(data.get("created_at")),
            next_at=moment(data.get("next_at")),
        )


@dataclass(frozen=True)
class Engine:
    id: str
    name: str
    type: str
    status: str


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def parse_int(value: Any) -> int | None:
    """10, "10", 10.0 or "10.0" -> 10; anything else (None, "", "ten", 1.5, True) -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


def parse_timestamp(value: Any) -> datetime | None:
    """CSE's "long" timestamps: above 10**12 milliseconds, else seconds; int or numeric string.

    An ISO 8601 string is accepted too. The result is UTC-aware; unreadable values give None.
    """
    if value is None or isinstance(value, bool):
        return None
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if number is None or number != number or number <= 0:
        return None
    if number > 10**12:
        number /= 1000.0
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_error(status: int, text: str) -> CseError:
    """Any of CSE's error shapes, or a non-JSON body, as a CseError."""
    try:
        data: Any = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        source = data
        nested = data.get("error")
        if isinstance(nested, dict):  # {"error": {"code", "message"}} (IAM-style gateways)
            source = {**nested, **{k: v for k, v in data.items() if k != "error"}}
        code = _first(source, "error_code", "errorCode", "code")
        msg = _first(source, "error_msg", "errorMessage", "errorMsg", "message", "msg")
        detail = _first(source, "detail", "details")
        if code or msg:
            return CseError(
                status,
                code or f"HTTP {status}",
                msg or "(no message)",
                detail,
                kind="auth" if status == 401 else "http",
            )
    snippet = text.strip()[:200] or "(empty body)"
    return CseError(status, f"HTTP {status}", snippet, "", kind="auth" if status == 401 else "http")


def _first(data: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = data.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)
    return ""


# --- the client ------------------------------------------------------------------------------


class _Trace:
    """Watches httpcore's trace events to learn whether the request started to leave."""

    def __init__(self) -> None:
        self.traced = False
        self.sent = False

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.traced = True
        if name.endswith("send_request_headers.started"):
            self.sent = True

    @property
    def may_have_sent(self) -> bool:
        # A transport that does not trace (a test double, a proxy) is assumed to have sent.
        return self.sent or not self.traced


class CseClient:
    def __init__(
        self,
        endpoint: str,
        tokens: TokenProvider,
        *,
        enterprise_project_id: str = "0",
        connect_timeout: float = 5,
        timeout: float = 30,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_retries: int = 2,
        retry_backoff: float = 0.2,
        on_call: Callable[[str, int | None, float], None] | None = None,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._tokens = tokens
        self._enterprise_project_id = enterprise_project_id
        self._timeout = float(timeout)
        self._connect_retries = max(0, connect_retries)
        self._retry_backoff = retry_backoff
        self._on_call = on_call
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(float(timeout), connect=float(connect_timeout)),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"CseClient(endpoint={self._endpoint!r})"

    @property
    def endpoint(self) -> str:
        return self._endpoint

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "X-Auth-Token": token,
            "X-Enterprise-Project-ID": self._enterprise_project_id,
            "Content-Type": "application/json;charset=UTF-8",
            "Accept": "application/json",
        }

    def _finish(
        self, operation: str, status: int | None, started: float, outcome: str, **fields: str
    ) -> None:
        duration = time.monotonic() - started
        context = "".join(f" {k}={v}" for k, v in fields.items())
        level = logging.INFO if outcome in ("ok", "created") else logging.WARNING
        log.log(
            level,
            "cse %s%s status=%s duration=%.3fs outcome=%s",
            operation,
            context,
            status if status is not None else "-",
            duration,
            outcome,
            extra={
                "cse_operation": operation,
                "cse_status": status,
                "cse_duration": round(duration, 3),
                "cse_outcome": outcome,
            },
        )
        if self._on_call is not None:
            try:
                self._on_call(operation, status, duration)
            except Exception:  # a metrics hook must never break a CSE call
                log.exception("on_call hook failed")

    # --- create ----------------------------------------------------------------------------

    async def create_backup_policy(
        self,
        engine_id: str,
        schedule: str,
        reserve: int | None = None,
        max_files: int | None = None,
    ) -> BackupPolicy:
        """POST the policy once. Raises CseError, CseOutcomeUnknown, CseUnavailable, IamError."""
        url = f"{self._endpoint}/cseengine/v1/engines/{quote(engine_id, safe='')}/backup-strategies"
        body: dict[str, Any] = {"schedule": schedule}
        if reserve is not None:
            body["reserve"] = int(reserve)
        if max_files is not None:
            body["maxFiles"] = int(max_files)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

        started = time.monotonic()
        status: int | None = None
        outcome = "error"
        # The attempt in flight, if any; None while fetching a token (nothing can be sent then).
        trace: _Trace | None = None
        getting_token = True
        try:
            async with asyncio.timeout(self._timeout):
                token = await self._tokens.token()
                getting_token = False
                for auth_attempt in range(2):
                    trace, status = _Trace(), None
                    response = await self._send_once(
                        "POST", url, token, content=content, trace=trace
                    )
                    status = response.status_code
                    if status == 401 and auth_attempt == 0:
                        trace = None  # the gateway refused it: nothing was created
                        getting_token = True
                        fresh = await self._tokens.refresh(token)
                        getting_token = False
                        if fresh != token:
                            log.info("cse create_backup_policy: HTTP 401, token renewed, retrying")
                            token = fresh
                            continue
                    break
        except TimeoutError:
            if trace is not None and trace.may_have_sent:
                outcome = "unknown"
                self._finish("create_backup_policy", status, started, outcome, engine=engine_id)
                raise CseOutcomeUnknown(
                    None,
                    "NO_ANSWER",
                    f"CSE did not answer within {self._timeout:g}s. {_CHECK_CONSOLE}",
                    kind="unknown",
                ) from None
            outcome = "unavailable"
            self._finish("create_backup_policy", status, started, outcome, engine=engine_id)
            waited_for = (
                "no service token came from IAM"
                if getting_token
                else f"CSE at {self._endpoint} could not be reached"
            )
            raise CseUnavailable(
                f"{waited_for} within {self._timeout:g}s; nothing was sent to CSE, "
                "it is safe to try again",
                iam=getting_token,
            ) from None
        except CseOutcomeUnknown:
            self._finish("create_backup_policy", None, started, "unknown", engine=engine_id)
            raise
        except CseUnavailable:
            self._finish("create_backup_policy", None, started, "unavailable", engine=engine_id)
            raise
        except Exception:
            self._finish("create_backup_policy", status, started, outcome, engine=engine_id)
            raise

        if response.status_code in _GATEWAY_LOST:
            # A gateway between us and CSE lost CSE's answer (502 bad gateway, 504 backend
            # timeout): CSE may well have created the policy. Never a failure, never a retry.
            self._finish("create_backup_policy", status, started, "unknown", engine=engine_id)
            error = parse_error(response.status_code, self._scrub(response.text, token))
            raise CseOutcomeUnknown(
                error.status,
                error.error_code,
                error.error_msg,
                (
                    f"The gateway in front of CSE answered HTTP {response.status_code}, so CSE's "
                    f"own answer was lost. {_CHECK_CONSOLE}"
                    + (f" ({error.detail})" if error.detail else "")
                ),
                kind="unknown",
            )
        if not 200 <= response.status_code < 300:
            self._finish("create_backup_policy", status, started, "failed", engine=engine_id)
            raise parse_error(response.status_code, self._scrub(response.text, token))
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise ValueError("not an object")
            policy = BackupPolicy.from_response(data, engine_id=engine_id, schedule=schedule)
        except ValueError:
            self._finish("create_backup_policy", status, started, "malformed", engine=engine_id)
            raise CseOutcomeUnknown(
                response.status_code,
                "MALFORMED_RESPONSE",
                f"CSE answered HTTP {response.status_code} without a policy id. {_CHECK_CONSOLE}",
                self._scrub(response.text, token).strip()[:200],
                kind="malformed",
            ) from None
        self._finish(
            "create_backup_policy", status, started, "created", engine=engine_id, policy=policy.id
        )
        return policy

    async def _send_once(
        self, method: str, url: str, token: str, *, content: bytes | None, trace: _Trace
    ) -> httpx.Response:
        """One request of a non-idempotent call: connect failures retried, nothing else."""
        for attempt in range(self._connect_retries + 1):
            try:
                return await self._client.request(
                    method,
                    url,
                    content=content,
                    headers=self._headers(token),
                    extensions={"trace": trace},
                )
            except _CONNECT_ERRORS as exc:
                if trace.sent:  # cannot happen for a connect error, but never risk a repeat
                    raise self._unknown(exc) from None
                if await self._retry_after_backoff("connect", attempt, exc):
                    continue
                raise CseUnavailable(
                    f"CSE at {self._endpoint} could not be reached ({type(exc).__name__}, "
                    f"{self._connect_retries + 1} attempts); nothing was sent, it is safe to "
                    "try again"
                ) from None
            except _AFTER_SEND_ERRORS as exc:
                raise self._unknown(exc) from None
            except httpx.TransportError as exc:
                if trace.may_have_sent:
                    raise self._unknown(exc) from None
                raise CseUnavailable(
                    f"CSE at {self._endpoint} could not be called ({type(exc).__name__}); "
                    "nothing was sent"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unknown(self, exc: Exception) -> CseOutcomeUnknown:
        reason = (
            f"no answer within {self._timeout:g}s"
            if isinstance(exc, httpx.TimeoutException)
            else "the connection broke before CSE answered"
        )
        return CseOutcomeUnknown(
            None,
            "NO_ANSWER",
            f"The request was sent but {reason} ({type(exc).__name__}). {_CHECK_CONSOLE}",
            kind="unknown",
        )

    @staticmethod
    def _scrub(text: str, token: str) -> str:
        return text.replace(token, "***") if token else text

    # --- read-only calls -------------------------------------------------------------------

    async def _get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        """An idempotent GET: retried on any transport error, and once after a 401."""
        token = await self._tokens.token()
        for auth_attempt in range(2):
            response = await self._get_with_retries(url, token, params)
            if response.status_code == 401 and auth_attempt == 0:
                fresh = await self._tokens.refresh(token)
                if fresh != token:
                    token = fresh
                    continue
            if not 200 <= response.status_code < 300:
                raise parse_error(response.status_code, self._scrub(response.text, token))
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _retry_after_backoff(self, what: str, attempt: int, exc: Exception) -> bool:
        """Wait before the next try (exponential backoff); False when no try is left."""
        if attempt >= self._connect_retries:
            return False
        delay = self._retry_backoff * (2**attempt)
        log.warning(
            "cse %s failed (%s), retry %d of %d in %.2fs",
            what,
            type(exc).__name__,
            attempt + 1,
            self._connect_retries,
            delay,
        )
        await asyncio.sleep(delay)
        return True

    async def _get_with_retries(
        self, url: str, token: str | None, params: dict[str, str] | None
    ) -> httpx.Response:
        headers = self._headers(token) if token is not None else {"Accept": "application/json"}
        headers.pop("Content-Type", None)
        for attempt in range(self._connect_retries + 1):
            try:
                return await self._client.get(url, params=params, headers=headers)
            except httpx.TransportError as exc:
                if await self._retry_after_backoff("GET", attempt, exc):
                    continue
                raise CseUnavailable(
                    f"CSE at {self._endpoint} could not be reached ({type(exc).__name__}, "
                    f"{self._connect_retries + 1} attempts)"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_engines(self, project_id: str) -> list[Engine]:
        """Every engine of the project (pages of 100). Raises CseError, CseUnavailable, IamError."""
        url = f"{self._endpoint}/v2/{quote(project_id, safe='')}/enginemgr/engines"
        started = time.monotonic()
        status: int | None = None
        engines: list[Engine] = []
        try:
            async with asyncio.timeout(self._timeout):
                offset = 0
                while True:
                    try:
                        response = await self._get(url, {"offset": str(offset), "limit": "100"})
                    except CseError as exc:
                        status = exc.status
                        raise
                    status = response.status_code
                    try:
                        data = response.json()
                        items = data.get("data") or []
                        total = parse_int(data.get("total"))
                        if not isinstance(items, list):
                            raise ValueError("data is not a list")
                    except (ValueError, AttributeError):
                        raise CseError(
                            status,
                            "MALFORMED_RESPONSE",
                            "CSE answered the engine list with an unreadable body",
                            response.text.strip()[:200],
                            kind="malformed",
                        ) from None
                    for item in items:
                        if isinstance(item, dict) and _text(item.get("id")):
                            engines.append(
                                Engine(
                                    id=_text(item.get("id")),
                                    name=_text(item.get("name")),
                                    type=_text(item.get("type")),
                                    status=_text(item.get("status")),
                                )
                            )
                    offset += 100
                    if not items or total is None or offset >= total or offset >= 10_000:
                        break
        except TimeoutError:
            self._finish("list_engines", status, started, "timeout")
            raise CseUnavailable(
                f"CSE did not list the engines within {self._timeout:g}s"
            ) from None
        except Exception:
            self._finish("list_engines", status, started, "error")
            raise
        self._finish("list_engines", status, started, "ok", count=str(len(engines)))
        return engines

    async def ping(self) -> None:
        """Reachability: any HTTP answer from the endpoint counts. Raises CseUnavailable."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._get_with_retries(f"{self._endpoint}/", None, None)
        except TimeoutError:
            self._finish("ping", None, started, "timeout")
            raise CseUnavailable(
                f"CSE at {self._endpoint} did not answer within {self._timeout:g}s"
            ) from None
        except CseUnavailable:
            self._finish("ping", None, started, "unavailable")
            raise
        self._finish("ping", response.status_code, started, "ok")
