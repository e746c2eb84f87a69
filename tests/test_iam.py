"""IAM service tokens against the fake IAM, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from bot.iam import (
    IamError,
    IamTokenProvider,
    StaticTokenProvider,
    TokenProvider,
    token_provider_from_settings,
)
from bot.settings import ConfigError, Settings
from tests.fakes.cse_server import FakeCse


@pytest.fixture
def fake() -> Iterator[FakeCse]:
    with FakeCse() as server:
        yield server


class Clock:
    """A settable stand-in for time.time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def provider(
    fake: FakeCse,
    *,
    password: str | None = None,
    project_id: str | None = None,
    project_name: str | None = "use-fake",
    clock: Clock | None = None,
) -> IamTokenProvider:
    return IamTokenProvider(
        fake.url,
        fake.iam_domain,
        fake.iam_user,
        SecretStr(password if password is not None else fake.iam_password),
        project_id,
        fake.project_name if project_name == "use-fake" else project_name,
        clock=clock if clock is not None else time.time,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_token_request_is_a_password_identity_scoped_to_the_project_name(
    fake: FakeCse,
) -> None:
    tokens = provider(fake)
    try:
        token = await tokens.token()
    finally:
        await tokens.aclose()
    (sent,) = fake.token_requests()
    assert sent.json == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": fake.iam_user,
                        "password": fake.iam_password,
                        "domain": {"name": fake.iam_domain},
                    }
                },
            },
            "scope": {"project": {"name": fake.project_name}},
        }
    }
    assert fake.issued_tokens == [token]
    # The project id was not configured: it comes from the token.
    assert tokens.project_id == fake.project_id


async def test_a_configured_project_id_scopes_by_id(fake: FakeCse) -> None:
    tokens = provider(fake, project_id=fake.project_id, project_name=None)
    try:
        await tokens.token()
    finally:
        await tokens.aclose()
    (sent,) = fake.token_requests()
    assert sent.json["auth"]["scope"] == {"project": {"id": fake.project_id}}
    assert tokens.project_id == fake.project_id


async def test_expiry_comes_from_the_token_body(fake: FakeCse) -> None:
    fake.token_ttl = 7200
    tokens = provider(fake)
    try:
        assert tokens.expires_at is None
        await tokens.token()
    finally:
        await tokens.aclose()
    expires = tokens.expires_at
    assert expires is not None and expires.tzinfo is not None
    (sent,) = fake.token_requests()
    assert abs(expires.timestamp() - (sent.at + 7200)) < 60


async def test_the_token_is_cached(fake: FakeCse) -> None:
    tokens = provider(fake)
    try:
        first = await tokens.token()
        second = await tokens.token()
    finally:
        await tokens.aclose()
    assert first == second
    assert len(fake.token_requests()) == 1


async def test_concurrent_callers_share_one_iam_request(fake: FakeCse) -> None:
    fake.iam_delay = 0.2
    tokens = provider(fake)
    try:
        results = await asyncio.gather(*(tokens.token() for _ in range(10)))
    finally:
        await tokens.aclose()
    assert len(set(results)) == 1
    assert len(fake.token_requests()) == 1


async def test_token_is_renewed_within_one_hour_of_expiry(fake: FakeCse) -> None:
    clock = Clock(datetime.now(UTC).timestamp())
    tokens = provider(fake, clock=clock)
    try:
        first = await tokens.token()
        expires = tokens.expires_at
        assert expires is not None
        clock.now = expires.timestamp() - 3601
        assert await tokens.token() == first
        assert len(fake.token_requests()) == 1
        clock.now = expires.timestamp() - 3599
        second = await tokens.token()
    finally:
        await tokens.aclose()
    assert second != first
    assert len(fake.token_requests()) == 2
    assert tokens.expires_at is not None and tokens.expires_at > expires


async def test_failed_early_renewal_keeps_the_current_token_until_near_expiry(
    fake: FakeCse,
) -> None:
    clock = Clock(datetime.now(UTC).timestamp())
    tokens = provider(fake, clock=clock)
    try:
        first = await tokens.token()
        expires = tokens.expires_at
        assert expires is not None
        clock.now = expires.timestamp() - 1800  # in the renewal hour
        fake.respond_next(500, {"error": {"message": "IAM busy"}}, target="iam")
        assert await tokens.token() == first
        assert len(fake.token_requests()) == 2
        # IAM is not asked again straight away...
        clock.now += 10
        assert await tokens.token() == first
        assert len(fake.token_requests()) == 2
        # ...but after the retry interval, and then the new token is used.
        clock.now += 30
        second = await tokens.token()
        assert second != first
        assert len(fake.token_requests()) == 3
        # A token about to expire is not handed out when renewal fails.
        clock.now = (tokens.expires_at or expires).timestamp() - 30
        fake.respond_next(500, {"error": {"message": "IAM busy"}}, target="iam")
        with pytest.raises(IamError) as caught:
            await tokens.token()
    finally:
        await tokens.aclose()
    assert "HTTP 500" in str(caught.value)


async def test_refresh_of_a_token_already_replaced_reuses_the_new_one(fake: FakeCse) -> None:
    tokens = provider(fake)
    try:
        first = await tokens.token()
        second = await tokens.refresh(first)
        assert second != first
        assert len(fake.token_requests()) == 2
        # Another caller saw the same 401 with the old token: no third request.
        assert await tokens.refresh(first) == second
        assert len(fake.token_requests()) == 2
        # Without a stale token, refresh always asks IAM.
        third = await tokens.refresh()
    finally:
        await tokens.aclose()
    assert third not in (first, second)
    assert len(fake.token_requests()) == 3


async def test_concurrent_refreshes_of_the_same_stale_token_make_one_request(
    fake: FakeCse,
) -> None:
    tokens = provider(fake)
    try:
        stale = await tokens.token()
        fake.iam_delay = 0.2
        results = await asyncio.gather(*(tokens.refresh(stale) for _ in range(5)))
    finally:
        await tokens.aclose()
    assert len(set(results)) == 1 and results[0] != stale
    assert len(fake.token_requests()) == 2


# --- failures --------------------------------------------------------------------------------


async def test_wrong_password_is_a_clear_error_without_the_password(fake: FakeCse) -> None:
    wrong = "Wrong-Password-123"
    tokens = provider(fake, password=wrong)
    try:
        with pytest.raises(IamError) as caught:
            await tokens.token()
    finally:
        await tokens.aclose()
    text = str(caught.value)
    assert "HTTP 401" in text and "IAM_PASSWORD" in text and fake.iam_user in text
    assert wrong not in text and wrong not in repr(caught.value)
    assert fake.issued_tokens == []


async def test_iam_down_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Secret-Password-456"
    endpoint = f"http://127.0.0.1:{closed_port()}"
    tokens = IamTokenProvider(endpoint, "d", "u", SecretStr(secret), project_name="p")
    try:
        with pytest.raises(IamError) as caught:
            await tokens.token()
    finally:
        await tokens.aclose()
    assert "unreachable" in str(caught.value)
    assert endpoint in str(caught.value)
    assert secret not in str(caught.value)
    assert not [r for r in caplog.records if secret in r.getMessage()]


async def test_an_unexpected_status_is_reported_without_secrets(fake: FakeCse) -> None:
    fake.respond_next(
        403,
        {"error": {"code": 403, "message": f"policy denies {fake.iam_password}"}},
        target="iam",
    )
    tokens = provider(fake)
    try:
        with pytest.raises(IamError) as caught:
            await tokens.token()
    finally:
        await tokens.aclose()
    text = str(caught.value)
    assert "HTTP 403" in text and "policy denies ***" in text
    assert fake.iam_password not in text


async def test_a_201_without_the_token_header_is_an_unexpected_answer(fake: FakeCse) -> None:
    fake.respond_next(201, {"token": {"expires_at": "2030-01-01T00:00:00Z"}}, target="iam")
    tokens = provider(fake)
    try:
        with pytest.raises(IamError) as caught:
            await tokens.token()
    finally:
        await tokens.aclose()
    assert "X-Subject-Token" in str(caught.value)


async def test_a_201_without_an_expiry_is_an_unexpected_answer(fake: FakeCse) -> None:
    fake.respond_next(
        201, {"token": {"project": {"id": "p"}}}, headers={"X-Subject-Token": "tok-1"}, target="iam"
    )
    tokens = provider(fake)
    try:
        with pytest.raises(IamError) as caught:
            await tokens.token()
    finally:
        await tokens.aclose()
    assert "expires_at" in str(caught.value)
    assert "tok-1" not in str(caught.value)


async def test_naive_expiry_is_read_as_utc(fake: FakeCse) -> None:
    fake.respond_next(
        201,
        {"token": {"expires_at": "2030-01-01T00:00:00.000000", "project": {"id": "proj-9"}}},
        headers={"X-Subject-Token": "tok-2"},
        target="iam",
    )
    tokens = provider(fake)
    try:
        assert await tokens.token() == "tok-2"
    finally:
        await tokens.aclose()
    assert tokens.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert tokens.project_id == "proj-9"


async def test_secrets_stay_out_of_logs_and_reprs(
    fake: FakeCse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = provider(fake)
    try:
        token = await tokens.token()
        await tokens.refresh(token)
    finally:
        await tokens.aclose()
    texts = [r.getMessage() for r in caplog.records] + [repr(tokens)]
    assert any("IAM token obtained" in t for t in texts)
    for secret in [fake.iam_password, *fake.issued_tokens]:
        assert not [t for t in texts if secret in t]


# --- static tokens and settings --------------------------------------------------------------


async def test_static_token_is_returned_by_token_and_refresh() -> None:
    tokens = StaticTokenProvider(SecretStr("static-abc"), "proj-1")
    assert await tokens.token() == "static-abc"
    assert await tokens.refresh("static-abc") == "static-abc"
    assert tokens.project_id == "proj-1"
    assert tokens.expires_at is None
    assert "static-abc" not in repr(tokens)
    await tokens.aclose()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CSE_AUTH_TOKEN",
        "IAM_ENDPOINT",
        "IAM_DOMAIN",
        "IAM_USER",
        "IAM_PASSWORD",
        "IAM_PROJECT_ID",
        "IAM_PROJECT_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


def iam_settings(fake: FakeCse, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,
        cse_endpoint=fake.url,
        iam_endpoint=fake.url,
        iam_domain=fake.iam_domain,
        iam_user=fake.iam_user,
        iam_password=SecretStr(fake.iam_password),
        iam_project_name=fake.project_name,
        **extra,
    )


@pytest.mark.usefixtures("clean_env")
async def test_settings_with_a_static_token_use_it_even_with_iam_set(fake: FakeCse) -> None:
    tokens: TokenProvider = token_provider_from_settings(
        iam_settings(fake, cse_auth_token=SecretStr("static-xyz"))
    )
    try:
        assert isinstance(tokens, StaticTokenProvider)
        assert await tokens.token() == "static-xyz"
    finally:
        await tokens.aclose()
    assert fake.token_requests() == []


@pytest.mark.usefixtures("clean_env")
async def test_settings_with_iam_only_fetch_tokens_from_iam(fake: FakeCse) -> None:
    tokens = token_provider_from_settings(iam_settings(fake))
    try:
        assert isinstance(tokens, IamTokenProvider)
        token = await tokens.token()
    finally:
        await tokens.aclose()
    assert fake.issued_tokens == [token]
    assert tokens.project_id == fake.project_id


@pytest.mark.usefixtures("clean_env")
def test_settings_without_any_token_source_are_refused() -> None:
    settings = Settings(_env_file=None, cse_endpoint="http://127.0.0.1:1")
    with pytest.raises(ConfigError) as caught:
        token_provider_from_settings(settings)
    assert "CSE_AUTH_TOKEN" in str(caught.value)
