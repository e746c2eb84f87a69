"""`--profile DIR`: py-spy on the bot during chosen phases, and a summary of where time went.

py-spy is not a dependency of the project; install it into the venv (`pip install py-spy`) to
use this. Each phase leaves DIR/<phase>.txt (collapsed stacks, one `frame;frame;... count` per
line, for flamegraph tools) and DIR/<phase>.summary.txt.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.procs import BenchError

RATE = 250  # samples per second
STARTUP = 1.0  # seconds

# Which part of the stack a frame belongs to, by the file it is in.
AREAS: tuple[tuple[str, str], ...] = (
    ("/bot/", "bot (our code)"),
    ("/slack_bolt/", "slack_bolt"),
    ("/slack_sdk/", "slack_sdk"),
    ("/aiohttp/", "aiohttp"),
    ("/redis/", "redis-py"),
    ("/pydantic", "pydantic"),
    ("/prometheus_client/", "prometheus_client"),
    ("/httpx/", "httpx"),
    ("/httpcore/", "httpx"),
    ("/asyncio/", "asyncio"),
    ("/json/", "json"),
    ("/logging/", "logging"),
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def available() -> bool:
    return shutil.which("py-spy") is not None


@contextmanager
def recording(pid: int, output: Path) -> Iterator[None]:
    """py-spy records `pid` while the block runs; its collapsed stacks are appended to
    `output` (so several blocks of one phase make one profile)."""
    binary = shutil.which("py-spy")
    if binary is None:
        raise BenchError("--profile needs py-spy: pip install py-spy (into the venv)")
    argv = [binary, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
    part = output.with_name(output.name + ".part")
    argv += ["--output", str(part), "--nonblocking"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(STARTUP)  # py-spy attaching; a SIGINT before that kills it without output
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate(timeout=10)
        if not part.exists():
            detail = err.decode(errors="replace")[-500:]
            raise BenchError(f"py-spy (exit {process.returncode}) wrote nothing: {detail}")
        with output.open("a") as whole:
            whole.write(part.read_text())
        part.unlink()


def _area(path: str) -> str:
    path = "/" + path
    for marker, name in AREAS:
        if marker in path:
            return name
    return "other"


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        out.append((frame, "") if match is None else (match["func"], match["file"]))
    return out


# Frames every sample has (the entry point and the event loop): not worth listing.
_BOILERPLATE = ("<frozen runpy>", "bot/__main__.py", "bot/cli.py", "asyncio/")


def summarise(raw: Path, top: int = 30) -> str:
    """Self time by area, and the functions with the most inclusive time (ours, and any)."""
    self_time: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)
        self_time[_area(frames[-1][1])] += count
        seen: set[str] = set()
        for func, path in frames:
            if not path or path.startswith(_BOILERPLATE) or "/asyncio/" in path:
                continue
            name = f"{path}:{func}"
            if name in seen:
                continue
            seen.add(name)
            anywhere[name] += count
            if _area(path) == "bot (our code)":
                ours[name] += count
    if total == 0:
        return "no samples\n"
    lines = [f"{total} samples at {RATE}/s (busy time only)", "", "Self time by area:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_time.most_common()]
    lines += ["", "Inclusive time, our code:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in ours.most_common(top)]
    lines += ["", "Inclusive time, any code:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in anywhere.most_common(top)]
    return "\n".join(lines) + "\n"
