"""`cse-backup-bot check`: validate the configuration and reach every dependency (CONTRACT §2).

One line per check: `OK`, `WARN` or `FAIL`, what was found, and for a failure the fix. Exit status
0 only when nothing failed. No secret is ever printed: URLs lose their passwords, tokens are only
described by their kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import GROUP_ID, ConfigError, Settings

CHECK_TIMEOUT = 10.0
SIGNING_SECRET = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class CheckResult:
    status: str  # OK, WARN or FAIL
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


async def _bounded(coro: Awaitable[CheckResult], name: str) -> CheckResult:
    try:
        return await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except TimeoutError:
        return CheckResult(
            "FAIL", name, f"no answer within {CHECK_TIMEOUT:g}s", "check the network"
        )


def check_config(settings: Settings) -> list[CheckResult]:
    results = []
    try:
        settings.require_for_run()
        results.append(CheckResult("OK", "configuration", "every required setting is present"))
    except ConfigError as exc:
        results.append(CheckResult("FAIL", "configuration", str(exc), "set it, then run again"))
    if settings.socket_mode:
        unused = " (SLACK_SIGNING_SECRET is not used)" if settings.slack_signing_secret else ""
        results.append(
            CheckResult(
                "OK",
                "mode",
                f"Socket Mode (SLACK_APP_TOKEN set){unused}; /healthz, /readyz and /metrics on "
                f"port {settings.port}",
            )
        )
    else:
        results.append(
            CheckResult(
                "OK",
                "mode",
                f"HTTP mode (SLACK_APP_TOKEN not set): Slack must reach POST /slack/events on "
                f"port {settings.port}",
            )
        )
        secret = settings.slack_signing_secret
        if secret is not None and not SIGNING_SECRET.match(secret.get_secret_value()):
            results.append(
                CheckResult(
                    "WARN",
                    "signing secret",
                    "SLACK_SIGNING_SECRET does not look like a Slack signing secret (32 hex "
                    "characters); Slack's requests will then all be refused with 401",
                    "copy Basic Information -> App Credentials -> Signing Secret (not the "
                    "Verification Token or the Client Secret)",
                )
            )
    return results


def _redis_fix(url: str, reason: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme == "rediss" and ("Timeout" in reason or "SSL" in reason or "ssl" in reason):
        return (
            "rediss:// connects with TLS: check that the server speaks TLS on that port and "
            "that its certificate is trusted here; a Redis without TLS takes redis://"
        )
    if scheme == "unix":
        return "check the socket path and that this user may open it (Redis `unixsocketperm`)"
    if "AUTH" in reason or "password" in reason or "NOAUTH" in reason or "WRONGPASS" in reason:
        return "put the right user and password in REDIS_URL (redis://user:password@host:6379/0)"
    return "start Redis or correct REDIS_URL"


async def check_store(settings: Settings) -> CheckResult:
    from bot.store import StoreUnavailable, open_store

    if settings.redis_url is None:
        return CheckResult(
            "WARN",
            "redis",
            "REDIS_URL is not set: the embedded in-process store is used; nothing survives a "
            "restart and replicas cannot share it",
            "set REDIS_URL=redis://host:6379/0 for production",
        )
    url = settings.redis_url
    store = open_store(url, settings.redis_prefix)
    try:
        await store.ping()
        return CheckResult("OK", "redis", f"{redact_url(url)} answers PING")
    except StoreUnavailable as exc:
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        password = urlsplit(url).password
        if password:
            reason = reason.replace(password, "***")
        return CheckResult(
            "FAIL",
            "redis",
            f"{redact_url(url)} does not answer ({reason})",
            _redis_fix(url, reason),
        )
    finally:
        with contextlib.suppress(Exception):
            await store.aclose()


async def check_persistence(settings: Settings) -> CheckResult | None:
    """A WARN when Redis keeps no append-only file: a Redis restart then loses what was written
    since its last snapshot (pending approvals, history, audit). None when it cannot be told."""
    if settings.redis_url is None:
        return None
    client: aioredis.Redis = aioredis.from_url(
        settings.redis_url, socket_timeout=3, socket_connect_timeout=3, decode_responses=True
    )
    try:
        info = await client.info("persistence")
    except Exception:  # not answering (reported by the redis check) or INFO not allowed
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    if str(info.get("aof_enabled", "1")) == "1":
        return CheckResult("OK", "redis persistence", "append-only file on")
    return CheckResult(
        "WARN",
        "redis persistence",
        "append-only file off: if Redis restarts, approvals and history written since its last "
        "snapshot are lost",
        "run Redis with `appendonly yes` (deploy/docker-compose.yml does), or use a managed "
        "Redis with persistence",
    )


def _slack_fix(error: str) -> str:
    return {
        "invalid_auth": "copy the Bot User OAuth Token (xoxb-) from OAuth & Permissions",
        "not_authed": "set SLACK_BOT_TOKEN",
        "account_inactive": "reinstall the app to the workspace and copy the new token",
        "token_revoked": "reinstall the app to the workspace and copy the new token",
        "missing_scope": "add the scopes from manifest.yml and reinstall the app",
    }.get(error, "check SLACK_BOT_TOKEN and SLACK_API_URL")


async def check_slack(settings: Settings, client: AsyncWebClient) -> list[CheckResult]:
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error", "error"))
        return [CheckResult("FAIL", "slack", f"auth.test answered {error}", _slack_fix(error))]
    except Exception as exc:  # network: connection refused, DNS, TLS
        return [
            CheckResult(
                "FAIL",
                "slack",
                f"{settings.slack_api_url} cannot be reached ({type(exc).__name__})",
                "check SLACK_API_URL and the network",
            )
        ]
    results = [
        CheckResult(
            "OK",
            "slack",
            f"authenticated as {auth.get('user', '?')} in {auth.get('team', '?')}",
        )
    ]
    results.extend(await _check_people(settings, client))
    return results


async def _check_people(settings: Settings, client: AsyncWebClient) -> list[CheckResult]:
    results = []
    named = {
        "APPROVERS": settings.approvers,
        "REQUESTERS": settings.requesters,
        "BREAK_GLASS_USERS": settings.break_glass_users,
    }
    for variable, ids in named.items():
        unknown = []
        for principal in ids:
            try:
                if GROUP_ID.match(principal):
                    await client.usergroups_users_list(usergroup=principal)
                else:
                    await client.users_info(user=principal)
            except SlackApiError as exc:
                error = str(exc.response.get("error", "error"))
                if error == "missing_scope":
                    results.append(
                        CheckResult(
                            "FAIL",
                            variable.lower(),
                            f"cannot look up {principal}: missing_scope",
                            _slack_fix(error),
                        )
                    )
                    return results
                unknown.append(f"{principal} ({error})")
        if unknown:
            results.append(
                CheckResult(
                    "FAIL",
                    variable.lower(),
                    f"unknown in this workspace: {', '.join(unknown)}",
                    f"correct {variable} (user ids U…/W… from a profile's 'Copy member ID', "
                    "group ids S…)",
                )
            )
        elif ids:
            results.append(
                CheckResult("OK", variable.lower(), f"{len(ids)} id(s) found in the workspace")
            )
    return results


async def check_socket(settings: Settings) -> CheckResult | None:
    if settings.slack_app_token is None:
        return None
    token = settings.slack_app_token.get_secret_value()
    if not token.startswith("xapp-"):
        return CheckResult(
            "FAIL",
            "socket mode",
            "SLACK_APP_TOKEN is not an app-level token (it must start with xapp-)",
            "create one under Basic Information -> App-Level Tokens with connections:write",
        )
    client = AsyncWebClient(token=token, base_url=settings.slack_api_url)
    try:
        await client.apps_connections_open(app_token=token)
        return CheckResult("OK", "socket mode", "apps.connections.open accepted the app token")
    except SlackApiError as exc:
        error = str(exc.response.get("error", "error"))
        fix = {
            "invalid_auth": "copy the app-level token (xapp-) from Basic Information -> "
            "App-Level Tokens again, or generate a new one with connections:write",
            "not_allowed_token_type": "SLACK_APP_TOKEN must be the app-level token (xapp-), "
            "not the bot token",
        }.get(error, "enable Socket Mode and give the app-level token the connections:write scope")
        return CheckResult("FAIL", "socket mode", f"apps.connections.open answered {error}", fix)
    except Exception as exc:
        return CheckResult(
            "FAIL",
            "socket mode",
            f"{settings.slack_api_url} cannot be reached ({type(exc).__name__})",
            "check SLACK_API_URL and the network (Socket Mode needs outbound HTTPS and WSS)",
        )


async def check_cse(settings: Settings) -> list[CheckResult]:
    from bot.cse import CseClient, CseError, CseUnavailable
    from bot.iam import IamError, token_provider_from_settings

    if not settings.cse_endpoint:
        return [CheckResult("FAIL", "cse", "CSE_ENDPOINT is not set", "set CSE_ENDPOINT")]
    if not settings.cse_auth_token and not settings.iam_endpoint:
        return [
            CheckResult(
                "FAIL",
                "token",
                "neither CSE_AUTH_TOKEN nor IAM_ENDPOINT is set",
                "set CSE_AUTH_TOKEN, or the IAM_* settings for a service account",
            )
        ]
    results: list[CheckResult] = []
    tokens = token_provider_from_settings(settings)
    cse = CseClient(
        settings.cse_endpoint,
        tokens,
        enterprise_project_id=settings.cse_enterprise_project_id,
        connect_timeout=settings.cse_connect_timeout,
        timeout=min(settings.cse_timeout, CHECK_TIMEOUT),
        connect_retries=0,
    )
    try:
        if settings.cse_auth_token:
            results.append(
                CheckResult(
                    "OK",
                    "token",
                    "static CSE_AUTH_TOKEN is set (service tokens expire 24 h after issue and "
                    "the bot cannot renew this one: prefer the IAM_* settings)",
                )
            )
        else:
            try:
                await tokens.token()
            except IamError as exc:
                results.append(
                    CheckResult(
                        "FAIL",
                        "iam",
                        str(exc),
                        "check IAM_ENDPOINT, IAM_DOMAIN, IAM_USER, IAM_PASSWORD and the project",
                    )
                )
                return results
            expires = tokens.expires_at
            left = ""
            if expires is not None:
                hours = (expires - datetime.now(UTC)).total_seconds() / 3600
                left = f", expires {expires.isoformat(timespec='minutes')} (in {hours:.1f} h)"
            results.append(
                CheckResult(
                    "OK",
                    "iam",
                    f"token issued for project {tokens.project_id or '?'}{left}",
                )
            )
        project = settings.project_id or tokens.project_id
        if project:
            try:
                engines = await cse.list_engines(project)
            except (CseError, CseUnavailable, IamError) as exc:
                token_refused = isinstance(exc, CseError) and exc.status == 401
                fix = (
                    "the token is expired or invalid (APIGW.0301): issue a new CSE_AUTH_TOKEN, "
                    "or better set the IAM_* settings so that the bot renews it"
                    if token_refused and settings.cse_auth_token
                    else "check CSE_ENDPOINT, the region and the token's project"
                )
                results.append(CheckResult("FAIL", "cse", f"listing engines failed: {exc}", fix))
                return results
            results.append(CheckResult("OK", "cse", f"{len(engines)} engine(s) in the project"))
            known = {e.id for e in engines}
            missing = [f"{n}={i}" for n, i in settings.engines.items() if i not in known]
            if missing:
                results.append(
                    CheckResult(
                        "WARN",
                        "cse engines",
                        f"not in this project's engine list: {', '.join(missing)}",
                        "correct CSE_ENGINES (ids from the CSE console)",
                    )
                )
        else:
            try:
                await cse.ping()
                results.append(
                    CheckResult("OK", "cse", f"{settings.cse_endpoint} answers (no project id)")
                )
            except CseUnavailable as exc:
                results.append(
                    CheckResult("FAIL", "cse", str(exc), "check CSE_ENDPOINT and the network")
                )
    finally:
        await cse.aclose()
        await tokens.aclose()
    return results


async def run_checks(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Run every check, print one line each, return the exit status."""
    results = check_config(settings)
    for line in results:
        out(line.line())
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None,
        base_url=settings.slack_api_url,
    )
    groups: list[Awaitable[list[CheckResult]]] = []

    async def many(coro: Awaitable[list[CheckResult]], name: str) -> list[CheckResult]:
        try:
            return await asyncio.wait_for(coro, CHECK_TIMEOUT * 3)
        except TimeoutError:
            return [CheckResult("FAIL", name, "no answer in time", "check the network")]

    async def store_checks() -> list[CheckResult]:
        found = [await _bounded(check_store(settings), "redis")]
        if found[0].status == "OK":
            persistence = await check_persistence(settings)
            found.extend([persistence] if persistence else [])
        return found

    groups.append(store_checks())
    if settings.slack_bot_token:
        groups.append(many(check_slack(settings, client), "slack"))
    else:
        results.append(
            CheckResult("FAIL", "slack", "SLACK_BOT_TOKEN is not set", "set SLACK_BOT_TOKEN")
        )
        out(results[-1].line())
    socket = check_socket(settings)

    async def socket_check() -> list[CheckResult]:
        found = await socket
        return [found] if found else []

    groups.append(many(socket_check(), "socket mode"))
    groups.append(many(check_cse(settings), "cse"))
    for group in await asyncio.gather(*groups):
        for result in group:
            results.append(result)
            out(result.line())
    failed = sum(r.status == "FAIL" for r in results)
    warned = sum(r.status == "WARN" for r in results)
    out(f"{len(results) - failed - warned} ok, {warned} warning(s), {failed} failed")
    return 1 if failed else 0
