"""The benchmark still runs: `python -m bench --quick` end to end, as a process.

Nothing here is about speed (these machines are shared and noisy); it checks that every row of
the table is there, that the measured numbers are positive, and that everything the benchmark
started is gone afterwards.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import CONCURRENCY, KINDS

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="the benchmark starts its own redis-server"
)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-write", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_every_ack_row_has_bot_and_bare_percentiles(quick_run: tuple[dict[str, Any], str]) -> None:
    results, _ = quick_run
    assert results["bot_error"] is None, results["bot_error"]
    rows = {(row["kind"], row["concurrency"]): row for row in results["ack"]}
    assert set(rows) == {(kind, c) for kind, _ in KINDS for c in CONCURRENCY}
    for row in rows.values():
        for side in ("bot", "bare"):
            summary = row[side]
            assert summary["n"] > 0
            assert all(_positive(summary[p]) for p in ("p50", "p95", "p99")), (row, side)
            assert summary["p50"] <= summary["p95"] <= summary["p99"]


def test_full_flow_redis_schedule_startup_and_memory(quick_run: tuple[dict[str, Any], str]) -> None:
    results, _ = quick_run
    assert {f["concurrency"] for f in results["flow"]} == {1, 32}
    for flow in results["flow"]:
        assert flow["failures"] == 0
        assert _positive(flow["throughput"]) and _positive(flow["latency"]["p50"])
        # the created message cannot reach Slack before the CSE answered
        assert flow["latency"]["p50"] >= flow["cse_delay"]
    paths = {p["name"].split(" ")[0]: p for p in results["redis"]}
    assert set(paths) == {"modal", "quick"}
    for path in paths.values():
        assert path["total_round_trips"] > 0 and path["total_commands"] > 0
        assert path["total_sent"] <= path["total_commands"]
    assert [t["expression"] for t in results["schedule"]] == [
        "0 2 * * *",
        "0 0 29 2 1",
        "0 0 29 2 *",
        "0 0 30 2 *",
    ]
    assert all(_positive(t["p50"]) for t in results["schedule"])
    assert results["sample"]["size"] > 0 and _positive(results["sample"]["worst_preview"])
    assert _positive(results["startup_bot"]) and _positive(results["startup_bare"])
    assert results["rss_bot_after"] >= 1000 and _positive(results["rss_bot"])


def test_table_is_printed_with_every_row(quick_run: tuple[dict[str, Any], str]) -> None:
    results, stdout = quick_run
    expected = [row["measure"] for row in results["rows"]]
    assert len(expected) >= 2 * len(KINDS) + 10
    for measure in expected:
        assert measure in stdout
    assert "bot not available" not in stdout
    targets = {t["name"]: t for t in results["targets"]}
    assert any(name.startswith("ack p99 at c=32") for name in targets)
    assert all(t["met"] in (True, False) for t in targets.values())


def test_nothing_is_left_running(quick_run: tuple[dict[str, Any], str]) -> None:
    results, _ = quick_run
    started = results["processes"]
    assert {"redis", "fakes-host", "bare", "bot", "bot-redis"} <= set(started)
    assert [name for name, pid in started.items() if _running(pid)] == []
