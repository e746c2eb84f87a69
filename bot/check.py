"""`cse-backup-bot check`: validate the configuration and reach every dependency (CONTRACT §2).

One line per check: `OK`, `WARN` or `FAIL`, what was found, and for a failure the fix. Exit status
0 only when nothing failed. No secret is ever printed: URLs lose their passwords, tokens are only
described by their kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import GROUP_ID, ConfigError, Settings

CHECK_TIMEOUT = 10.0


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
        results.append(
            CheckResult(
                "OK", "mode", f"Socket Mode (SLACK_APP_TOKEN set); health on {settings.port}"
            )
        )
    else:
        results.append(
            CheckResult(
                "OK",
                "mode",
                f"HTTP mode: Slack must reach POST /slack/events on port {settings.port}",
            )
        )
    return results


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
    store = open_store(settings.redis_url, settings.redis_prefix)
    try:
        await store.ping()
        return CheckResult("OK", "redis", f"{redact_url(settings.redis_url)} answers PING")
    except StoreUnavailable as exc:
        return CheckResult(
            "FAIL",
            "redis",
            f"{redact_url(settings.redis_url)} does not answer ({exc})",
            "start Redis or correct REDIS_URL",
        )
    finally:
        await store.aclose()


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
        return CheckResult(
            "FAIL",
            "socket mode",
            f"apps.connections.open answered {error}",
            "enable Socket Mode and give the app-level token the connections:write scope",
        )
    except Exception as exc:
        return CheckResult(
            "FAIL", "socket mode", f"Slack cannot be reached ({type(exc).__name__})", "network"
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
            results.append(CheckResult("OK", "token", "static CSE_AUTH_TOKEN is set"))
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
                results.append(
                    CheckResult(
                        "FAIL",
                        "cse",
                        f"listing engines failed: {exc}",
                        "check CSE_ENDPOINT, the region and the token's project",
                    )
                )
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

    async def one(coro: Awaitable[CheckResult], name: str) -> list[CheckResult]:
        return [await _bounded(coro, name)]

    async def many(coro: Awaitable[list[CheckResult]], name: str) -> list[CheckResult]:
        try:
            return await asyncio.wait_for(coro, CHECK_TIMEOUT * 3)
        except TimeoutError:
            return [CheckResult("FAIL", name, "no answer in time", "check the network")]

    groups.append(one(check_store(settings), "redis"))
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
