"""Child processes of the benchmark: Redis, the bot, the bare app, the fakes host.

Every process is started through a `Processes` registry and stopped by its pid when the
registry closes (terminate, then kill after a grace period), whatever happened before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bench import PROJECT_ROOT

LOOPBACK = "127.0.0.1"
# Inherited from the parent environment by every child; everything else is set explicitly so a
# developer's shell (SLACK_APP_TOKEN, APPROVERS, ...) cannot change what is measured.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")


class BenchError(RuntimeError):
    """A setup step failed; the message says which and why."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` (VmRSS from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise BenchError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far (0.0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK


def children_of(pid: int) -> list[int]:
    """The pids of `pid`'s children (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """GET `url`: the HTTP status, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    started: float  # time.monotonic() just before the process was spawned
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    """Starts children and stops exactly those, by pid, when closed."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cse-bench-")))
    children: list[Child] = field(default_factory=list)
    spawned: dict[str, int] = field(default_factory=dict)  # name -> pid, of every child ever

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> Child:
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("wb")
        cwd = self.workdir / name
        cwd.mkdir(exist_ok=True)  # an empty directory: no stray .env is read
        started = time.monotonic()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=log if stdout is None else stdout,
            stderr=log,
        )
        log.close()
        child = Child(name, process, started, log_path)
        self.children.append(child)
        self.spawned[name] = process.pid
        return child

    def stop(self, child: Child, grace: float = 5.0) -> None:
        if child in self.children:
            self.children.remove(child)
        process = child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(grace)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        for child in reversed(list(self.children)):
            with contextlib.suppress(Exception):
                self.stop(child)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def wait_http_ok(child: Child, url: str, timeout: float) -> float:
    """Poll `url` until it answers 200; the seconds since the child was spawned.

    Raises BenchError when the child exits or `timeout` passes first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(
                f"{child.name} exited with status {child.process.returncode} before {url} "
                f"answered:\n{child.log_tail()}"
            )
        if http_status(url, timeout=0.5) == 200:
            return time.monotonic() - child.started
        time.sleep(0.005)
    raise BenchError(f"{child.name}: {url} did not answer 200 within {timeout:.0f} s")


@dataclass
class Redis:
    url: str
    host: str
    port: int
    child: Child | None  # None when REDIS_URL was given


def start_redis(procs: Processes, timeout: float = 10.0) -> Redis:
    """Our own redis-server on a free loopback port, nothing persisted."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed; install it or set REDIS_URL")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    child = procs.spawn("redis", argv, child_env({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"redis-server exited:\n{child.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith(b"+PONG"):
                return Redis(f"redis://{LOOPBACK}:{port}/0", LOOPBACK, port, child)
        time.sleep(0.02)
    raise BenchError(f"redis-server did not answer PING within {timeout:.0f} s")


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]
