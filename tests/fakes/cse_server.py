"""A fake Huawei CSE + IAM HTTP server on 127.0.0.1, for tests.

It runs aiohttp on its own event loop in a background thread, so sync and async tests alike can
talk to it over real loopback HTTP. One base URL serves both APIs (use it as CSE_ENDPOINT and
IAM_ENDPOINT):

    POST /v3/auth/tokens                                        IAM password token, 201
    POST /cseengine/v1/engines/{engineId}/backup-strategies      create a backup policy
    GET  /v2/{project_id}/enginemgr/engines?offset=&limit=       list engines

Usage:

    with FakeCse() as fake:
        client = CseClient(fake.url, StaticTokenProvider(SecretStr(fake.static_token)))
        ...
        assert len(fake.create_requests()) == 1

Scripting: `respond_next(...)`, `close_next()`, `malformed_next()` queue one-off answers;
`delay`, `iam_delay`, `fail_mode`, `numbers_as_strings`, `timestamp_unit`, `next_at` change
every answer; `revoke_tokens()` makes every issued token answer 401 APIGW.0301.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from aiohttp import web

Target = Literal["create", "engines", "iam", "any"]
Action = Literal["respond", "close", "malformed"]

TOKEN_EXPIRED = {
    "error_code": "APIGW.0301",
    "error_msg": "Incorrect IAM authentication information: token expired",
}

DEFAULT_ENGINES: list[dict[str, Any]] = [
    {
        "id": "6f3c1e2a-0b1d-4c5e-9f00-123456789abc",
        "name": "prod",
        "type": "CSE2",
        "status": "Available",
        "flavor": "cse.s1.small2",
    },
    {
        "id": "0d9e4b7c-5a6f-4e3d-8c2b-abcdef012345",
        "name": "staging",
        "type": "CSE2",
        "status": "Available",
        "flavor": "cse.s1.small2",
    },
]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded
    raw_path: str  # as sent, percent-escapes kept
    query: dict[str, str]
    headers: dict[str, str]  # as received, names in their original case
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON
    at: float  # time.time() when it arrived

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass
class ScriptedResponse:
    status: int = 200
    body: Any = None  # dict/list: JSON; str/bytes: sent as is; None: empty
    headers: dict[str, str] | None = None
    delay: float = 0.0
    action: Action = "respond"
    target: Target = "create"


@dataclass
class _Issued:
    expires: float
    project_id: str


@dataclass
class FakeCse:
    """The fake server. All attributes may be changed by a test while it runs."""

    static_token: str | None = "static-test-token-0123456789"
    iam_domain: str = "acme-domain"
    iam_user: str = "cse-backup-bot"
    iam_password: str = "Correct-Horse-Battery-9"
    project_id: str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    project_name: str = "ap-southeast-1"
    token_ttl: float = 24 * 3600  # seconds from issue to token.expires_at
    engines: list[dict[str, Any]] = field(default_factory=lambda: [*DEFAULT_ENGINES])
    # Shape of the create answer.
    numbers_as_strings: bool = False  # "7" instead of 7 for reserve/maxFiles/createAt/nextAt
    timestamp_unit: Literal["ms", "s"] = "ms"
    next_at: datetime | None = None  # None: next cron run in schedule_timezone (else now + 1 d)
    schedule_timezone: str = "UTC"
    # Behaviour of every CSE answer (not IAM) until changed.
    delay: float = 0.0
    iam_delay: float = 0.0  # seconds before every IAM answer
    fail_mode: Literal["close_connection", "malformed"] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._policies: list[dict[str, Any]] = []
        self._script: deque[ScriptedResponse] = deque()
        self._issued: dict[str, _Issued] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._port = 0

    # --- life cycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeCse is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> FakeCse:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:  # report start-up failures to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-cse", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError("FakeCse failed to start") from failure[0]
        return self

    async def _serve(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stopping, runner = self._stopping, self._runner

        async def shutdown() -> None:
            if stopping is not None:
                stopping.set()
            if runner is not None:
                await runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = None
            self._loop = None

    def __enter__(self) -> FakeCse:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the tests look at ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def policies(self) -> list[dict[str, Any]]:
        """The answers of every policy created, in order."""
        with self._lock:
            return [dict(p) for p in self._policies]

    def create_requests(self) -> list[RecordedRequest]:
        return [
            r for r in self.requests if r.method == "POST" and r.path.endswith("/backup-strategies")
        ]

    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v3/auth/tokens"]

    def engine_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/engines")]

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    # --- scripting -------------------------------------------------------------------------

    def respond_next(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        *,
        target: Target = "create",
    ) -> None:
        """The next request to `target` gets this answer instead of the normal one."""
        with self._lock:
            self._script.append(ScriptedResponse(status, body, headers, delay, "respond", target))

    def close_next(self, *, target: Target = "create", delay: float = 0.0) -> None:
        """The next request to `target` is read in full, then its connection is dropped."""
        with self._lock:
            self._script.append(ScriptedResponse(delay=delay, action="close", target=target))

    def malformed_next(self, body: str = "<html>OK</html>", *, target: Target = "create") -> None:
        """The next request to `target` gets 200 with a body that is not JSON."""
        with self._lock:
            self._script.append(ScriptedResponse(200, body, action="malformed", target=target))

    def revoke_tokens(self, *, static: bool = False) -> None:
        """Every token issued so far (and the static one, if asked) now gets 401 APIGW.0301."""
        with self._lock:
            self._issued.clear()
            if static:
                self.static_token = None

    def reset(self) -> None:
        """Forget requests, policies, scripts and failure modes (issued tokens stay valid)."""
        with self._lock:
            self._requests.clear()
            self._policies.clear()
            self._script.clear()
        self.delay = 0.0
        self.iam_delay = 0.0
        self.fail_mode = None

    # --- the server side -------------------------------------------------------------------

    def _take_script(self, target: Target) -> ScriptedResponse | None:
        with self._lock:
            for i, item in enumerate(self._script):
                if item.target in (target, "any"):
                    del self._script[i]
                    return item
        return None

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._stopping is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query=dict(request.query),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in request.raw_headers},
            body=body,
            json=parsed,
            at=time.time(),
        )
        with self._lock:
            self._requests.append(record)

        parts = [unquote(p) for p in record.raw_path.split("/") if p]
        target: Target
        if request.method == "POST" and parts == ["v3", "auth", "tokens"]:
            target = "iam"
        elif (
            request.method == "POST"
            and len(parts) == 5
            and parts[:3] == ["cseengine", "v1", "engines"]
            and parts[4] == "backup-strategies"
        ):
            target = "create"
        elif request.method == "GET" and len(parts) == 4 and parts[2:] == ["enginemgr", "engines"]:
            target = "engines"
        else:
            return _json(404, {"error_code": "CSE.00404000", "error_msg": "Not found"})

        script = self._take_script(target)
        await self._sleep(self.iam_delay if target == "iam" else self.delay)
        if script is not None:
            await self._sleep(script.delay)
            if script.action == "close":
                return await self._drop(request)
            if script.action == "malformed":
                return web.Response(status=200, text=str(script.body), content_type="text/html")
            return _scripted(script)
        if target != "iam":
            if self.fail_mode == "close_connection":
                return await self._drop(request)
            if self.fail_mode == "malformed":
                return web.Response(status=200, text="<html>OK</html>", content_type="text/html")

        if target == "iam":
            return self._iam(record)
        denied = self._check_token(record)
        if denied is not None:
            return denied
        if target == "create":
            return self._create(record, parts[3])
        return self._list_engines(record, parts[1])

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing can be written any more; wait until the server shuts the handler down.
        await self._sleep(3600)
        raise asyncio.CancelledError

    def _check_token(self, record: RecordedRequest) -> web.Response | None:
        token = record.header("X-Auth-Token")
        with self._lock:
            issued = self._issued.get(token or "")
            static = self.static_token
        if token and static and token == static:
            return None
        if issued is not None and issued.expires > time.time():
            return None
        return _json(401, TOKEN_EXPIRED)

    # IAM ----------------------------------------------------------------------------------

    def _iam(self, record: RecordedRequest) -> web.Response:
        try:
            auth = record.json["auth"]
            identity = auth["identity"]
            if "password" not in identity["methods"]:
                raise KeyError("methods")
            user = identity["password"]["user"]
            name, password, domain = user["name"], user["password"], user["domain"]["name"]
            project = auth["scope"]["project"]
        except (KeyError, TypeError):
            return _json(
                400,
                {"error": {"code": 400, "message": "The request body is invalid.", "title": "Bad"}},
            )
        if (name, password, domain) != (self.iam_user, self.iam_password, self.iam_domain):
            return _json(
                401,
                {
                    "error": {
                        "code": 401,
                        "message": "The username or password is wrong.",
                        "title": "Unauthorized",
                    }
                },
            )
        if project.get("id") not in (None, self.project_id) or project.get("name") not in (
            None,
            self.project_name,
        ):
            return _json(
                400,
                {"error": {"code": 400, "message": "project not found", "title": "Bad Request"}},
            )
        token = "MIIfake" + uuid.uuid4().hex + uuid.uuid4().hex
        now = time.time()
        expires = now + self.token_ttl
        with self._lock:
            self._issued[token] = _Issued(expires, self.project_id)
        body = {
            "token": {
                "methods": ["password"],
                "issued_at": _iso(now),
                "expires_at": _iso(expires),
                "project": {
                    "id": self.project_id,
                    "name": self.project_name,
                    "domain": {"id": "d" * 32, "name": self.iam_domain},
                },
                "user": {
                    "id": "u" * 32,
                    "name": self.iam_user,
                    "domain": {"id": "d" * 32, "name": self.iam_domain},
                },
            }
        }
        return _json(201, body, headers={"X-Subject-Token": token})

    # CSE ----------------------------------------------------------------------------------

    def _create(self, record: RecordedRequest, engine_id: str) -> web.Response:
        content_type = record.header("Content-Type") or ""
        if not content_type.lower().startswith("application/json"):
            return _bad("Content-Type must be application/json", f"got {content_type!r}")
        data = record.json
        if not isinstance(data, dict):
            return _bad("The request body is not a JSON object", "")
        unknown = sorted(set(data) - {"schedule", "reserve", "maxFiles"})
        if unknown:
            return _bad("Unknown parameter", ", ".join(unknown))
        schedule = data.get("schedule")
        if not isinstance(schedule, str) or not schedule.strip():
            return _bad("Invalid parameter: schedule", "schedule must be a non-empty string")
        for key in ("reserve", "maxFiles"):
            value = data.get(key)
            if key in data and (not isinstance(value, int) or isinstance(value, bool)):
                return _bad(f"Invalid parameter: {key}", f"{key} must be an integer")
        now = time.time()
        next_at = self._next_at(schedule, now)
        policy: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "engineId": engine_id,
            "schedule": schedule,
        }
        if "reserve" in data:
            policy["reserve"] = self._number(data["reserve"])
        if "maxFiles" in data:
            policy["maxFiles"] = self._number(data["maxFiles"])
        policy["createAt"] = self._stamp(now)
        policy["nextAt"] = self._stamp(next_at)
        with self._lock:
            self._policies.append(policy)
        return _json(200, policy)

    def _number(self, value: int) -> int | str:
        return str(value) if self.numbers_as_strings else value

    def _stamp(self, epoch: float) -> int | str:
        value = int(epoch * 1000) if self.timestamp_unit == "ms" else int(epoch)
        return self._number(value)

    def _next_at(self, schedule: str, now: float) -> float:
        if self.next_at is not None:
            return self.next_at.timestamp()
        try:
            from croniter import croniter

            zone = ZoneInfo(self.schedule_timezone)
            start = datetime.fromtimestamp(now, tz=zone)
            nxt = croniter(schedule, start).get_next(datetime)
            return float(nxt.timestamp())
        except Exception:
            return (datetime.fromtimestamp(now, tz=UTC) + timedelta(days=1)).timestamp()

    def _list_engines(self, record: RecordedRequest, project_id: str) -> web.Response:
        if project_id != self.project_id:
            return _json(
                403,
                {
                    "error_code": "CSE.00403001",
                    "error_msg": "No permission for this project",
                    "detail": f"project {project_id}",
                },
            )
        try:
            offset = int(record.query.get("offset", "0"))
            limit = int(record.query.get("limit", "100"))
        except ValueError:
            return _bad("Invalid parameter: offset/limit", "must be integers")
        with self._lock:
            engines = [dict(e) for e in self.engines]
        return _json(200, {"total": len(engines), "data": engines[offset : offset + limit]})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def _bad(message: str, detail: str) -> web.Response:
    return _json(400, {"error_code": "CSE.00400001", "error_msg": message, "detail": detail})


def _scripted(script: ScriptedResponse) -> web.Response:
    body = script.body
    headers = dict(script.headers or {})
    if body is None:
        return web.Response(status=script.status, headers=headers)
    if isinstance(body, bytes):
        payload, default_type = body, "application/octet-stream"
    elif isinstance(body, str):
        payload, default_type = body.encode("utf-8"), "text/plain; charset=utf-8"
    else:
        payload, default_type = json.dumps(body).encode("utf-8"), "application/json"
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = default_type
    return web.Response(status=script.status, body=payload, headers=headers)
