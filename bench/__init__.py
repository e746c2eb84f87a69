"""The benchmark: ack latency and the full flow of the running bot, measured against a bare Bolt
app in the same run, plus Redis cost, the schedule engine, start-up time and memory.

Run it with `python -m bench` (see `python -m bench --help`); it writes `bench/RESULTS.md`.
Everything it starts (Redis, the fake Slack and CSE, the bot, the bare app) listens on
127.0.0.1 and is stopped when it ends, also on errors.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
