"""The CSE client against the fake CSE + IAM server, over real loopback HTTP."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.cse import (
    BackupPolicy,
    CseClient,
    CseError,
    CseOutcomeUnknown,
    CseUnavailable,
    Engine,
    parse_error,
    parse_int,
    parse_timestamp,
)
from bot.iam import IamTokenProvider, StaticTokenProvider
from tests.fakes.cse_server import DEFAULT_ENGINES, FakeCse

ENGINE = "6f3c1e2a-0b1d-4c5e-9f00-123456789abc"


@pytest.fixture
def fake() -> Iterator[FakeCse]:
    with FakeCse() as server:
        yield server


@pytest.fixture
async def client(fake: FakeCse) -> AsyncIterator[CseClient]:
    assert fake.static_token is not None
    tokens = StaticTokenProvider(SecretStr(fake.static_token), fake.project_id)
    cse = CseClient(fake.url, tokens, timeout=5, retry_backoff=0.01)
    yield cse
    await cse.aclose()


def iam_provider(fake: FakeCse, **kwargs: Any) -> IamTokenProvider:
    return IamTokenProvider(
        fake.url,
        fake.iam_domain,
        fake.iam_user,
        SecretStr(fake.iam_password),
        project_name=fake.project_name,
        **kwargs,
    )


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, counting how many requests it was asked to send."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- success ---------------------------------------------------------------------------------


async def test_create_returns_the_policy_with_integer_fields_and_ms_timestamps(
    fake: FakeCse, client: CseClient
) -> None:
    fake.next_at = datetime(2030, 1, 2, 2, 0, tzinfo=UTC)
    policy = await client.create_backup_policy(ENGINE, "0 2 * * *", reserve=7, max_files=5)

    answer = fake.policies[0]
    assert isinstance(answer["reserve"], int) and answer["createAt"] > 10**12
    assert policy.id == answer["id"]
    assert policy.engine_id == ENGINE
    assert policy.schedule == "0 2 * * *"
    assert (policy.reserve, policy.max_files) == (7, 5)
    assert policy.next_at == datetime(2030, 1, 2, 2, 0, tzinfo=UTC)
    assert policy.created_at is not None and policy.created_at.tzinfo == UTC
    assert policy.created_at == datetime.fromtimestamp(answer["createAt"] / 1000, tz=UTC)


async def test_create_reads_numbers_sent_as_strings_and_second_timestamps(
    fake: FakeCse, client: CseClient
) -> None:
    fake.numbers_as_strings = True
    fake.timestamp_unit = "s"
    fake.next_at = datetime(2030, 1, 2, 2, 0, tzinfo=UTC)
    policy = await client.create_backup_policy(ENGINE, "0 2 * * *", reserve=10, max_files=3)

    answer = fake.policies[0]
    assert answer["reserve"] == "10" and answer["maxFiles"] == "3"
    assert isinstance(answer["createAt"], str) and int(answer["createAt"]) < 10**12
    assert (policy.reserve, policy.max_files) == (10, 3)
    assert policy.next_at == datetime(2030, 1, 2, 2, 0, tzinfo=UTC)
    assert policy.created_at == datetime.fromtimestamp(int(answer["createAt"]), tz=UTC)


@pytest.mark.parametrize(
    ("answer", "reserve", "max_files", "created", "next_at"),
    [
        (
            {
                "reserve": "10",
                "maxFiles": "10000",
                "createAt": "1717200000000",
                "nextAt": "1717286400",
            },
            10,
            10000,
            datetime(2024, 6, 1, 0, 0, tzinfo=UTC),
            datetime(2024, 6, 2, 0, 0, tzinfo=UTC),
        ),
        (
            {"reserve": 7, "maxFiles": 5, "createAt": 1717200000, "nextAt": 1717286400000},
            7,
            5,
            datetime(2024, 6, 1, 0, 0, tzinfo=UTC),
            datetime(2024, 6, 2, 0, 0, tzinfo=UTC),
        ),
        ({"reserve": None, "createAt": "", "nextAt": None}, None, None, None, None),
    ],
)
async def test_create_parses_the_documented_answer_shapes_leniently(
    fake: FakeCse,
    client: CseClient,
    answer: dict[str, Any],
    reserve: int | None,
    max_files: int | None,
    created: datetime | None,
    next_at: datetime | None,
) -> None:
    fake.respond_next(
        200, {"id": "policy-1", "engineId": ENGINE, "schedule": "0 2 * * *", **answer}
    )
    policy = await client.create_backup_policy(ENGINE, "0 2 * * *", reserve=7)
    assert policy == BackupPolicy(
        id="policy-1",
        engine_id=ENGINE,
        schedule="0 2 * * *",
        reserve=reserve,
        max_files=max_files,
        created_at=created,
        next_at=next_at,
    )


async def test_policy_round_trips_through_a_plain_dict(fake: FakeCse, client: CseClient) -> None:
    policy = await client.create_backup_policy(ENGINE, "30 3 * * 1", reserve=3)
    again = BackupPolicy.from_dict(json.loads(json.dumps(policy.as_dict())))
    assert again == policy


# --- what is sent ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reserve", "max_files", "expected"),
    [
        (None, None, {"schedule": "0 2 * * *"}),
        (7, None, {"schedule": "0 2 * * *", "reserve": 7}),
        (None, 5, {"schedule": "0 2 * * *", "maxFiles": 5}),
        (7, 5, {"schedule": "0 2 * * *", "reserve": 7, "maxFiles": 5}),
    ],
)
async def test_body_holds_only_the_given_fields_as_integers(
    fake: FakeCse,
    client: CseClient,
    reserve: int | None,
    max_files: int | None,
    expected: dict[str, Any],
) -> None:
    await client.create_backup_policy(ENGINE, "0 2 * * *", reserve=reserve, max_files=max_files)
    (sent,) = fake.create_requests()
    assert json.loads(sent.body) == expected
    for key in ("reserve", "maxFiles"):
        if key in expected:
            assert type(sent.json[key]) is int


async def test_headers_are_exactly_the_documented_ones(fake: FakeCse) -> None:
    assert fake.static_token is not None
    tokens = StaticTokenProvider(SecretStr(fake.static_token))
    cse = CseClient(fake.url + "/", tokens, enterprise_project_id="ep-42")
    try:
        await cse.create_backup_policy(ENGINE, "0 2 * * *")
    finally:
        await cse.aclose()
    (sent,) = fake.create_requests()
    assert sent.raw_path == f"/cseengine/v1/engines/{ENGINE}/backup-strategies"
    assert sent.headers["X-Auth-Token"] == fake.static_token
    assert sent.headers["X-Enterprise-Project-ID"] == "ep-42"
    assert sent.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert sent.headers["Accept"] == "application/json"


async def test_engine_id_is_escaped_as_one_path_segment(fake: FakeCse, client: CseClient) -> None:
    policy = await client.create_backup_policy("eng 1/x?y", "0 2 * * *")
    (sent,) = fake.create_requests()
    assert sent.raw_path == "/cseengine/v1/engines/eng%201%2Fx%3Fy/backup-strategies"
    assert fake.policies[0]["engineId"] == "eng 1/x?y"
    assert policy.engine_id == "eng 1/x?y"


# --- error answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "msg", "detail"),
    [
        (
            {"error_code": "CSE.0001", "error_msg": "bad schedule", "detail": "field 2"},
            "CSE.0001",
            "bad schedule",
            "field 2",
        ),
        ({"errorCode": "SVCSTG.400", "errorMessage": "wrong"}, "SVCSTG.400", "wrong", ""),
        ({"code": "E42", "message": "nope", "detail": "d"}, "E42", "nope", "d"),
        (
            {"error": {"code": "APIGW.0101", "message": "api not found"}},
            "APIGW.0101",
            "api not found",
            "",
        ),
    ],
)
async def test_each_error_shape_is_parsed(
    fake: FakeCse, client: CseClient, body: dict[str, Any], code: str, msg: str, detail: str
) -> None:
    fake.respond_next(400, body)
    with pytest.raises(CseError) as caught:
        await client.create_backup_policy(ENGINE, "0 2 * * *")
    error = caught.value
    assert type(error) is CseError
    assert (error.status, error.error_code, error.error_msg, error.detail) == (
        400,
        code,
        msg,
        detail,
    )
    assert error.kind == "http"
    assert len(fake.create_requests()) == 1


def test_error_text_reads_like_a_sentence() -> None:
    error = parse_error(400, '{"error_code":"CSE.0001","error_msg":"bad schedule","detail":"x"}')
    assert str(error) == "CSE.0001 (HTTP 400): bad schedule — x"
    assert str(parse_error(400, '{"error_code":"CSE.0001","error_msg":"bad"}')) == (
        "CSE.0001 (HTTP 400): bad"
    )


async def test_non_json_error_body_keeps_the_first_200_characters(
    fake: FakeCse, client: CseClient
) -> None:
    text = "<html>" + "Bad Gateway " * 50 + "</html>"
    fake.respond_next(502, text)
    with pytest.raises(CseError) as caught:
        await client.create_backup_policy(ENGINE, "0 2 * * *")
    assert caught.value.status == 502
    assert caught.value.error_code == "HTTP 502"
    assert caught.value.error_msg == text[:200]
    assert len(fake.create_requests()) == 1


async def test_400_from_validation_is_not_retried(fake: FakeCse, client: CseClient) -> None:
    with pytest.raises(CseError) as caught:
        await client.create_backup_policy(ENGINE, "  ")
    assert caught.value.status == 400
    assert caught.value.error_msg == "Invalid parameter: schedule"
    assert "non-empty string" in caught.value.detail
    assert len(fake.create_requests()) == 1
    assert fake.policies == []


async def test_500_is_an_error_and_not_retried(fake: FakeCse, client: CseClient) -> None:
    fake.respond_next(
        500, {"error_code": "CSE.00500001", "error_msg": "internal error", "detail": "db"}
    )
    with pytest.raises(CseError) as caught:
        await client.create_backup_policy(ENGINE, "0 2 * * *")
    assert type(caught.value) is CseError
    assert str(caught.value) == "CSE.00500001 (HTTP 500): internal error — db"
    assert len(fake.create_requests()) == 1


@pytest.mark.parametrize("body", ["<html>OK</html>", '{"engineId": "x", "schedule": "0 2 * * *"}'])
async def test_200_without_a_policy_id_is_an_unknown_outcome(
    fake: FakeCse, client: CseClient, body: str
) -> None:
    fake.respond_next(200, body, headers={"Content-Type": "application/json"})
    with pytest.raises(CseOutcomeUnknown) as caught:
        await client.create_backup_policy(ENGINE, "0 2 * * *")
    assert caught.value.kind == "malformed"
    assert caught.value.status == 200
    assert "check the CSE console" in str(caught.value)
    assert len(fake.create_requests()) == 1


async def test_malformed_mode_answers_html(fake: FakeCse, client: CseClient) -> None:
    fake.malformed_next()
    with pytest.raises(CseOutcomeUnknown) as caught:
        await client.create_backup_policy(ENGINE, "0 2 * * *")
    assert caught.value.kind == "malformed"
    assert "may have been created" in caught.value.error_msg


# --- 401 and token refresh -------------------------------------------------------------------


async def test_401_refreshes_the_iam_token_once_and_repeats(fake: FakeCse) -> None:
    tokens = iam_provider(fake)
    cse = CseClient(fake.url, tokens)
    try:
        first = await tokens.token()
        fake.revoke_tokens()
        policy = await cse.create_backup_policy(ENGINE, "0 2 * * *", reserve=7)
    finally:
        await cse.aclose()
        await tokens.aclose()

    posts = fake.create_requests()
    assert len(posts) == 2
    assert len(fake.token_requests()) == 2
    assert posts[0].headers["X-Auth-Token"] == first
    assert posts[1].headers["X-Auth-Token"] != first
    assert posts[1].headers["X-Auth-Token"] in fake.issued_tokens
    assert policy.id == fake.policies[0]["id"]
    assert len(fake.policies) == 1


async def test_a_second_401_is_an_error(fake: FakeCse) -> None:
    tokens = iam_provider(fake)
    cse = CseClient(fake.url, tokens)
    body = {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"}
    fake.respond_next(401, body)
    fake.respond_next(401, body)
    try:
        with pytest.raises(CseError) as caught:
            await cse.create_backup_policy(ENGINE, "0 2 * * *")
    finally:
        await cse.aclose()
        await tokens.aclose()
    assert caught.value.status == 401
    assert caught.value.kind == "auth"
    assert caught.value.error_code == "APIGW.0301"
    assert len(fake.create_requests()) == 2
    assert len(fake.token_requests()) == 2


async def test_401_with_a_static_token_is_an_error_without_a_second_post(
    fake: FakeCse, client: CseClient
) -> None:
    fake.revoke_tokens(static=True)
    with pytest.raises(CseError) as caught:
        await client.create_backup_policy(ENGINE, "0 2 * * *")
    assert caught.value.status == 401
    assert caught.value.kind == "auth"
    assert str(caught.value).startswith("APIGW.0301 (HTTP 401): Incorrect IAM authentication")
    assert len(fake.create_requests()) == 1


# --- no answer, no connection ----------------------------------------------------------------


async def test_timeout_after_sending_is_unknown_and_never_retried(fake: FakeCse) -> None:
    assert fake.static_token is not None
    cse = CseClient(fake.url, StaticTokenProvider(SecretStr(fake.static_token)), timeout=0.5)
    fake.delay = 30  # cut short when the fake stops
    try:
        with pytest.raises(CseOutcomeUnknown) as caught:
            await cse.create_backup_policy(ENGINE, "0 2 * * *")
    finally:
        await cse.aclose()
    assert caught.value.kind == "unknown"
    assert caught.value.status is None
    assert "check the CSE console before trying again" in str(caught.value)
    assert len(fake.create_requests()) == 1


async def test_no_token_within_the_deadline_means_nothing_was_sent(fake: FakeCse) -> None:
    fake.iam_delay = 30  # cut short when the fake stops
    tokens = iam_provider(fake)
    cse = CseClient(fake.url, tokens, timeout=0.5)
    try:
        with pytest.raises(CseUnavailable) as caught:
            await cse.create_backup_policy(ENGINE, "0 2 * * *")
    finally:
        await cse.aclose()
        await tokens.aclose()
    assert "no service token came from IAM" in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert len(fake.token_requests()) == 1
    assert fake.create_requests() == []


async def test_connection_dropped_after_the_request_is_unknown(
    fake: FakeCse, client: CseClient
) -> None:
    fake.close_next()
    with pytest.raises(CseOutcomeUnknown) as caught:
        await client.create_backup_policy(ENGINE, "0 2 * * *")
    assert caught.value.kind == "unknown"
    assert "check the CSE console" in str(caught.value)
    assert len(fake.create_requests()) == 1


async def test_connection_refused_is_retried_then_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = CountingTransport()
    calls: list[tuple[str, int | None, float]] = []
    cse = CseClient(
        f"http://127.0.0.1:{closed_port()}",
        StaticTokenProvider(SecretStr("tok-abc")),
        transport=transport,
        connect_retries=2,
        retry_backoff=0.01,
        on_call=lambda op, status, seconds: calls.append((op, status, seconds)),
    )
    caplog.set_level(logging.INFO, logger="bot.cse")
    try:
        with pytest.raises(CseUnavailable) as caught:
            await cse.create_backup_policy(ENGINE, "0 2 * * *")
    finally:
        await cse.aclose()
    assert transport.calls == 3
    assert "nothing was sent" in str(caught.value)
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2
    assert [(op, status) for op, status, _ in calls] == [("create_backup_policy", None)]


# --- secrets ---------------------------------------------------------------------------------


async def test_secrets_never_reach_error_texts_or_logs(
    fake: FakeCse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = iam_provider(fake)
    cse = CseClient(fake.url, tokens, timeout=0.5)
    errors: list[Exception] = []
    try:
        token = await tokens.token()
        fake.respond_next(
            400, {"error_code": "CSE.1", "error_msg": f"token {token} is odd", "detail": token}
        )
        fake.respond_next(200, f"<html>{token}</html>")
        fake.close_next()
        fake.respond_next(401, {"error_code": "APIGW.0301", "error_msg": f"bad {token}"})
        fake.respond_next(401, {"error_code": "APIGW.0301", "error_msg": "still bad"})
        for _ in range(4):
            with pytest.raises(CseError) as caught:
                await cse.create_backup_policy(ENGINE, "0 2 * * *")
            errors.append(caught.value)
        await cse.create_backup_policy(ENGINE, "0 2 * * *")
        secrets = [fake.iam_password, token, *fake.issued_tokens]
    finally:
        await cse.aclose()
        await tokens.aclose()
    assert len(errors) == 4
    texts = [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(cse), repr(tokens)]
    assert any("cse create_backup_policy" in t for t in texts)
    for secret in secrets:
        assert not [t for t in texts if secret in t]


# --- engines and ping ------------------------------------------------------------------------


async def test_list_engines(fake: FakeCse, client: CseClient) -> None:
    engines = await client.list_engines(fake.project_id)
    assert engines == [
        Engine(id=e["id"], name=e["name"], type=e["type"], status=e["status"])
        for e in DEFAULT_ENGINES
    ]
    (sent,) = fake.engine_requests()
    assert sent.path == f"/v2/{fake.project_id}/enginemgr/engines"
    assert sent.query == {"offset": "0", "limit": "100"}
    assert sent.headers["X-Auth-Token"] == fake.static_token


async def test_list_engines_follows_pages(fake: FakeCse, client: CseClient) -> None:
    fake.engines = [
        {"id": f"e{i:03d}", "name": f"n{i}", "type": "CSE2", "status": "Available"}
        for i in range(150)
    ]
    engines = await client.list_engines(fake.project_id)
    assert [e.id for e in engines] == [f"e{i:03d}" for i in range(150)]
    assert [r.query["offset"] for r in fake.engine_requests()] == ["0", "100"]


async def test_list_engines_is_retried_after_a_dropped_connection(
    fake: FakeCse, client: CseClient
) -> None:
    fake.close_next(target="engines")
    engines = await client.list_engines(fake.project_id)
    assert len(engines) == len(DEFAULT_ENGINES)
    assert len(fake.engine_requests()) == 2


async def test_list_engines_of_another_project_is_an_error(
    fake: FakeCse, client: CseClient
) -> None:
    with pytest.raises(CseError) as caught:
        await client.list_engines("someone-elses-project")
    assert caught.value.status == 403
    assert caught.value.error_code == "CSE.00403001"


async def test_list_engines_with_an_iam_token(fake: FakeCse) -> None:
    tokens = iam_provider(fake)
    cse = CseClient(fake.url, tokens)
    try:
        await tokens.token()
        assert tokens.project_id == fake.project_id
        engines = await cse.list_engines(tokens.project_id)
    finally:
        await cse.aclose()
        await tokens.aclose()
    assert {e.name for e in engines} == {"prod", "staging"}


async def test_ping_counts_any_answer_and_fails_on_refused_connections(
    fake: FakeCse, client: CseClient
) -> None:
    await client.ping()
    assert fake.requests[-1].path == "/"
    cse = CseClient(
        f"http://127.0.0.1:{closed_port()}",
        StaticTokenProvider(SecretStr("t")),
        retry_backoff=0.01,
    )
    try:
        with pytest.raises(CseUnavailable):
            await cse.ping()
    finally:
        await cse.aclose()


async def test_on_call_reports_operation_status_and_duration(fake: FakeCse) -> None:
    assert fake.static_token is not None
    calls: list[tuple[str, int | None, float]] = []
    cse = CseClient(
        fake.url,
        StaticTokenProvider(SecretStr(fake.static_token)),
        on_call=lambda op, status, seconds: calls.append((op, status, seconds)),
    )
    try:
        await cse.create_backup_policy(ENGINE, "0 2 * * *")
        fake.respond_next(400, {"error_code": "CSE.1", "error_msg": "no"})
        with pytest.raises(CseError):
            await cse.create_backup_policy(ENGINE, "0 2 * * *")
        await cse.list_engines(fake.project_id)
    finally:
        await cse.aclose()
    assert [(op, status) for op, status, _ in calls] == [
        ("create_backup_policy", 200),
        ("create_backup_policy", 400),
        ("list_engines", 200),
    ]
    assert all(seconds >= 0 for _, _, seconds in calls)


# --- lenient parsing, as a table -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        ("7", 7),
        (" 10 ", 10),
        ("10000", 10000),
        (5.0, 5),
        ("5.0", 5),
        (None, None),
        ("", None),
        ("ten", None),
        (1.5, None),
        (True, None),
        ([], None),
    ],
)
def test_parse_int(value: Any, expected: int | None) -> None:
    assert parse_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1717200000, datetime(2024, 6, 1, tzinfo=UTC)),
        (1717200000000, datetime(2024, 6, 1, tzinfo=UTC)),
        ("1717200000", datetime(2024, 6, 1, tzinfo=UTC)),
        ("1717200000000", datetime(2024, 6, 1, tzinfo=UTC)),
        (10**12, None),  # exactly 10^12 is seconds: past year 9999, so unreadable
        (10**12 + 1000, datetime.fromtimestamp(10**9 + 1, tz=UTC)),
        ("2024-06-01T00:00:00Z", datetime(2024, 6, 1, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("soon", None),
        (0, None),
        (-5, None),
    ],
)
def test_parse_timestamp(value: Any, expected: datetime | None) -> None:
    result = parse_timestamp(value)
    assert result == expected
    if result is not None:
        assert result.tzinfo is not None and result.utcoffset() is not None
