"""`cse-backup-bot check` run as a process against fake Slack, fake CSE/IAM and a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.fakes.cse_server import DEFAULT_ENGINES, FakeCse
from tests.fakes.slack_api import FakeSlack
from tests.ops_support import RedisProcess

BOT_TOKEN = "xoxb-check-secret-4711"
SIGNING = "signing-secret-check-0815"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(bot_token=BOT_TOKEN) as fake:
        fake.add_user("U0APPROVER", real_name="Approver")
        fake.add_usergroup("S0ONCALL", ["U0APPROVER"])
        yield fake


@pytest.fixture
def cse() -> Iterator[FakeCse]:
    with FakeCse() as fake:
        yield fake


def check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {f.upper() for f in Settings.model_fields}
    }
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd,
        timeout=120,
    )


def healthy_env(slack: FakeSlack, cse: FakeCse) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING,
        "SLACK_API_URL": slack.url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "CSE_ENDPOINT": cse.url,
        "IAM_ENDPOINT": cse.url,
        "IAM_DOMAIN": cse.iam_domain,
        "IAM_USER": cse.iam_user,
        "IAM_PASSWORD": cse.iam_password,
        "IAM_PROJECT_NAME": cse.project_name,
        "APPROVERS": "U0APPROVER,S0ONCALL",
        "CSE_ENGINES": f"prod={DEFAULT_ENGINES[0]['id']}",
    }


def test_all_healthy_exits_zero(slack: FakeSlack, cse: FakeCse, tmp_path: Path) -> None:
    done = check(healthy_env(slack, cse), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert not any(line.startswith("FAIL") for line in lines)
    assert any(line.startswith("OK   redis") for line in lines)
    assert any(line.startswith("OK   slack") for line in lines)
    assert any(line.startswith("OK   iam") and "expires" in line for line in lines)
    assert any(line.startswith("OK   cse") and "2 engine(s)" in line for line in lines)
    assert any("HTTP mode" in line for line in lines)
    assert len(cse.token_requests()) == 1 and len(cse.engine_requests()) == 1


def test_each_failure_has_its_own_line_and_fix(
    slack: FakeSlack, cse: FakeCse, tmp_path: Path
) -> None:
    env = healthy_env(slack, cse)
    env.update(
        {
            "REDIS_URL": "redis://:pw-should-not-print@127.0.0.1:1/0",
            "IAM_PASSWORD": "Wrong-Password-Secret",
            "APPROVERS": "U0NOBODY",
        }
    )
    done = check(env, tmp_path)
    assert done.returncode == 1
    out = done.stdout
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any(line.startswith("FAIL redis") and "fix:" in line for line in fails)
    assert any(line.startswith("FAIL iam") and "fix:" in line for line in fails)
    assert any(line.startswith("FAIL approvers") and "U0NOBODY" in line for line in fails)
    for secret in ("pw-should-not-print", "Wrong-Password-Secret", BOT_TOKEN, SIGNING):
        assert secret not in out + done.stderr


def test_wrong_bot_token_and_embedded_store(slack: FakeSlack, cse: FakeCse, tmp_path: Path) -> None:
    env = healthy_env(slack, cse)
    del env["REDIS_URL"]
    env["SLACK_BOT_TOKEN"] = "xoxb-not-the-right-one"
    done = check(env, tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("WARN redis") and "embedded" in line for line in lines)
    assert any(line.startswith("FAIL slack") and "invalid_auth" in line for line in lines)


def test_static_token_without_project_pings_cse(
    slack: FakeSlack, cse: FakeCse, tmp_path: Path
) -> None:
    env = healthy_env(slack, cse)
    for name in ("IAM_ENDPOINT", "IAM_DOMAIN", "IAM_USER", "IAM_PASSWORD", "IAM_PROJECT_NAME"):
        del env[name]
    env["CSE_AUTH_TOKEN"] = "static-secret-token"
    done = check(env, tmp_path)
    assert done.returncode == 0, done.stdout
    assert "OK   token" in done.stdout and "static-secret-token" not in done.stdout


def test_unreachable_cse_and_missing_settings(slack: FakeSlack, tmp_path: Path) -> None:
    done = check(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_API_URL": slack.url,
            "CSE_ENDPOINT": "http://127.0.0.1:1",
            "CSE_AUTH_TOKEN": "x",
        },
        tmp_path,
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(
        line.startswith("FAIL configuration") and "SLACK_SIGNING_SECRET" in line for line in lines
    )
    assert any(line.startswith("FAIL cse") for line in lines)


def test_malformed_setting_is_one_fail_line(tmp_path: Path) -> None:
    done = check({"APPROVAL_TTL": "tomorrow"}, tmp_path)
    assert done.returncode == 1
    assert done.stdout.strip().startswith("FAIL configuration: APPROVAL_TTL")


# --- Socket Mode, warnings, REDIS_URL kinds, token expiry -----------------------------------


APP_TOKEN = "xapp-check-app-token-2718"


def socket_env(slack: FakeSlack, cse: FakeCse) -> dict[str, str]:
    env = healthy_env(slack, cse)
    del env["SLACK_SIGNING_SECRET"]  # not needed in Socket Mode
    env["SLACK_APP_TOKEN"] = APP_TOKEN
    return env


def test_socket_mode_app_token_is_tried(cse: FakeCse, tmp_path: Path) -> None:
    with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as slack:
        slack.add_user("U0APPROVER")
        slack.add_usergroup("S0ONCALL", ["U0APPROVER"])
        done = check(socket_env(slack, cse), tmp_path)
        assert done.returncode == 0, done.stdout
        lines = done.stdout.splitlines()
        assert any(line.startswith("OK   mode: Socket Mode") for line in lines)
        assert any(line.startswith("OK   socket mode: apps.connections.open") for line in lines)
        assert len(slack.calls_to("apps.connections.open")) == 1

        env = socket_env(slack, cse)
        env["SLACK_APP_TOKEN"] = "xapp-revoked-or-mistyped-1234"
        done = check(env, tmp_path)
        assert done.returncode == 1
        failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
        assert len(failed) == 1
        assert failed[0].startswith("FAIL socket mode: apps.connections.open answered invalid_auth")
        assert "App-Level Tokens" in failed[0]
        assert "xapp-revoked-or-mistyped-1234" not in done.stdout + done.stderr

        env["SLACK_APP_TOKEN"] = BOT_TOKEN  # the bot token where the app token belongs
        done = check(env, tmp_path)
        assert done.returncode == 1
        assert "FAIL socket mode: SLACK_APP_TOKEN is not an app-level token" in done.stdout


def test_warnings_alone_exit_zero(slack: FakeSlack, cse: FakeCse, tmp_path: Path) -> None:
    env = healthy_env(slack, cse)
    del env["REDIS_URL"]  # the embedded store: allowed, loudly
    done = check(env, tmp_path)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    warned = [line for line in lines if line.startswith("WARN")]
    assert any(line.startswith("WARN redis") and "restart" in line for line in warned)
    assert not any(line.startswith("FAIL") for line in lines)
    assert lines[-1].endswith("0 failed")


def test_http_mode_signing_secret_shape(slack: FakeSlack, cse: FakeCse, tmp_path: Path) -> None:
    env = healthy_env(slack, cse)
    env["SLACK_SIGNING_SECRET"] = "0123456789abcdef0123456789abcdef"
    done = check(env, tmp_path)
    assert "signing secret" not in done.stdout
    env["SLACK_SIGNING_SECRET"] = "legacyVerificationToken1"
    done = check(env, tmp_path)
    assert any(
        line.startswith("WARN signing secret") and "fix:" in line
        for line in done.stdout.splitlines()
    )
    assert "legacyVerificationToken1" not in done.stdout


def test_redis_on_a_unix_socket_with_persistence(
    slack: FakeSlack, cse: FakeCse, tmp_path: Path
) -> None:
    redis = RedisProcess(unix=True, appendonly=True).start()
    try:
        env = healthy_env(slack, cse)
        env["REDIS_URL"] = redis.url
        done = check(env, tmp_path)
        assert done.returncode == 0, done.stdout
        lines = done.stdout.splitlines()
        assert any(line.startswith(f"OK   redis: {redis.url} answers PING") for line in lines)
        assert any(line.startswith("OK   redis persistence") for line in lines)

        redis.stop()
        done = check(env, tmp_path)
        assert done.returncode == 1
        assert any(
            line.startswith("FAIL redis") and "socket path" in line
            for line in done.stdout.splitlines()
        )
    finally:
        redis.remove()


def test_redis_without_persistence_is_a_warning(
    slack: FakeSlack, cse: FakeCse, tmp_path: Path
) -> None:
    redis = RedisProcess(appendonly=False).start()
    try:
        env = healthy_env(slack, cse)
        env["REDIS_URL"] = redis.url
        done = check(env, tmp_path)
        assert done.returncode == 0, done.stdout
        assert any(
            line.startswith("WARN redis persistence") and "appendonly yes" in line
            for line in done.stdout.splitlines()
        )
    finally:
        redis.remove()


def test_rediss_against_a_plain_redis_fails_with_the_tls_hint(
    slack: FakeSlack, cse: FakeCse, tmp_path: Path
) -> None:
    env = healthy_env(slack, cse)
    env["REDIS_URL"] = "rediss://:tls-password-secret@127.0.0.1:6379/0"
    done = check(env, tmp_path)
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL redis: rediss://:***@127.0.0.1:6379/0")
    assert "TLS" in failed[0]
    assert "tls-password-secret" not in done.stdout + done.stderr


def test_expired_static_token_names_the_token(
    slack: FakeSlack, cse: FakeCse, tmp_path: Path
) -> None:
    env = healthy_env(slack, cse)
    for name in ("IAM_ENDPOINT", "IAM_DOMAIN", "IAM_USER", "IAM_PASSWORD", "IAM_PROJECT_NAME"):
        del env[name]
    env["CSE_AUTH_TOKEN"] = cse.static_token or ""
    env["IAM_PROJECT_ID"] = cse.project_id  # a known project: the engine list is asked for
    done = check(env, tmp_path)
    assert done.returncode == 0, done.stdout
    assert "24 h" in done.stdout  # the static token's lifetime is pointed out

    cse.revoke_tokens(static=True)  # the token has expired: APIGW.0301
    done = check(env, tmp_path)
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL cse")
    assert "APIGW.0301" in failed[0] and "CSE_AUTH_TOKEN" in failed[0].split("fix:")[1]
