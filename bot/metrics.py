"""Prometheus metrics, served on GET /metrics. Labels stay low-cardinality: kinds, outcomes,
method names and Slack error codes, never user ids, channel ids or request ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client.metrics_core import Metric
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

REGISTRY = CollectorRegistry(auto_describe=True)
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

INTERACTIONS = Counter(
    "cse_backup_interactions_total",
    "Slack interactions handled, by kind (command, view, action, options, event) and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
REQUESTS = Counter(
    "cse_backup_requests_total",
    "Backup policy requests by what happened to them (submitted, created, failed, unknown, "
    "rejected, cancelled, expired).",
    ["outcome"],
    registry=REGISTRY,
)
APPROVALS = Counter(
    "cse_backup_approvals_total",
    "Approve clicks by outcome (claimed, recorded, refused, lost_race, break_glass).",
    ["outcome"],
    registry=REGISTRY,
)
CSE_LATENCY = Histogram(
    "cse_backup_cse_call_seconds",
    "CSE API call latency by operation.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
    registry=REGISTRY,
)
CSE_STATUS = Counter(
    "cse_backup_cse_responses_total",
    "CSE API answers by operation and HTTP status (`none` when no answer came).",
    ["operation", "status"],
    registry=REGISTRY,
)
ACK_LATENCY = Histogram(
    "cse_backup_slack_ack_seconds",
    "Time from receiving a Slack request to answering it, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
    registry=REGISTRY,
)
PENDING_NAME = "cse_backup_pending_requests"
PENDING = Gauge(
    PENDING_NAME,
    "Requests waiting for approval (as last seen by the expiry task).",
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "cse_backup_redis_errors_total",
    "Operations that failed because the request store (Redis) did not answer.",
    registry=REGISTRY,
)
SLACK_API_ERRORS = Counter(
    "cse_backup_slack_api_errors_total",
    "Slack Web API calls that failed, by method and Slack error code.",
    ["method", "error"],
    registry=REGISTRY,
)
UNHANDLED = Counter(
    "cse_backup_unhandled_errors_total",
    "Errors shown to users as 'Something went wrong, reference <id>'.",
    registry=REGISTRY,
)


def observe_cse_call(operation: str, status: int | None, seconds: float) -> None:
    """The CseClient's `on_call` hook."""
    CSE_LATENCY.labels(operation).observe(seconds)
    CSE_STATUS.labels(operation, str(status) if status is not None else "none").inc()


def slack_error(method: str, error: str) -> None:
    # Slack error codes are a short fixed vocabulary; cap the length anyway.
    SLACK_API_ERRORS.labels(method[:40], (error or "unknown")[:40]).inc()


class SlackApiErrors(AsyncRetryHandler):
    """Counts every failed Slack Web API answer, by method and Slack error code, in one place.

    slack_sdk shows each answer (and each connection error) to its retry handlers in turn; this
    one goes first in the list, never asks for a retry, and so sees every attempt of every call,
    including those made by the per-request clients Bolt copies from the app's client and the
    Socket Mode client's `apps.connections.open`.
    """

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        del state
        method = urlsplit(request.url).path.rsplit("/", 1)[-1] or "unknown"
        if error is not None:
            slack_error(method, "timeout" if isinstance(error, TimeoutError) else "connection")
        elif response is not None:
            body = response.body if isinstance(response.body, dict) else {}
            if response.status_code != 200 or body.get("ok") is False:
                slack_error(method, str(body.get("error") or f"http_{response.status_code}"))
        return False


FOLLOWUPS = Counter(
    "cse_backup_followups_total",
    "Work after an acknowledgement (Bolt lazy functions), by where it ran: the follow-up "
    "worker process, or this process (no worker, or the worker down or behind).",
    ["where"],
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "cse_backup_worker_restarts_total",
    "Times the follow-up worker process exited unexpectedly and was started again.",
    registry=REGISTRY,
)

# What the follow-up worker counts travels as samples: [family, sample name, labels, value].
Sample = list[Any]


def own_samples() -> list[Sample]:
    """This process's counters, histograms and gauges (the bot's own, not the process
    collectors')."""
    found: list[Sample] = []
    for family in REGISTRY.collect():
        if not family.name.startswith("cse_backup"):
            continue
        if family.type not in _ADDED and family.name not in _SET:
            continue  # a gauge this process has not set says nothing
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                found.append([family.name, sample.name, dict(sample.labels), sample.value])
    return found


# Counts from the worker are added to this process's; a gauge the worker sets (it runs the sweep,
# see bot.worker) stands for the replica while the worker runs.
_ADDED = frozenset({"counter", "histogram"})
_GAUGES = frozenset({PENDING_NAME})
_SET: set[str] = set()  # the gauges this process has set


def set_pending(count: int) -> None:
    """The pending gauge, from this process's sweep. The worker's sweeps and the serving
    process's (while the worker is down) take turns: the latest stands for the replica."""
    PENDING.set(count)
    _SET.add(PENDING_NAME)
    WORKER.forget_gauge(PENDING_NAME)


class WorkerSamples:
    """The follow-up worker's counts, added to this process's on /metrics, and its gauges, which
    replace this process's until this process sets them again. A worker that exits (and is
    started again) keeps its counts in `_done`, so the sums never go back."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        self._current: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        self.gauges: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}

    @staticmethod
    def _keyed(samples: list[Sample]) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
        keyed = {}
        for family, name, labels, value in samples:
            keyed[(str(family), str(name), tuple(sorted(labels.items())))] = float(value)
        return keyed

    def update(self, samples: list[Sample]) -> None:
        keyed = self._keyed(samples)
        self.gauges.update({k: v for k, v in keyed.items() if k[0] in _GAUGES})
        self._current = {k: v for k, v in keyed.items() if k[0] not in _GAUGES}

    def fold(self) -> None:
        """The worker exited: its counts are kept; its gauges stand until a sweep sets them."""
        for key, value in self._current.items():
            self._done[key] = self._done.get(key, 0.0) + value
        self._current = {}

    def forget_gauge(self, family: str) -> None:
        self.gauges = {k: v for k, v in self.gauges.items() if k[0] != family}

    def totals(self) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
        totals = dict(self._done)
        for key, value in self._current.items():
            totals[key] = totals.get(key, 0.0) + value
        return totals


WORKER = WorkerSamples()


class _WithWorker:
    """REGISTRY, with the worker's counts added sample by sample and its gauges in place of
    this process's (for generate_latest)."""

    def collect(self) -> Iterator[Metric]:
        extra = WORKER.totals()
        gauges = WORKER.gauges
        if not extra and not gauges:
            yield from REGISTRY.collect()
            return
        for family in REGISTRY.collect():
            if family.name in _GAUGES and gauges:
                replaced = Metric(family.name, family.documentation, family.type, family.unit)
                for (name, sample_name, labels), value in gauges.items():
                    if name == family.name:
                        replaced.add_sample(sample_name, dict(labels), value)
                yield replaced
                continue
            if family.type not in _ADDED:
                yield family
                continue
            merged = Metric(family.name, family.documentation, family.type, family.unit)
            mine = {k: v for k, v in extra.items() if k[0] == family.name}
            for sample in family.samples:
                key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                value = sample.value + mine.pop(key, 0.0)
                merged.add_sample(sample.name, sample.labels, value, sample.timestamp)
            for (_, name, labels), value in mine.items():  # label sets only the worker has seen
                merged.add_sample(name, dict(labels), value)
            yield merged


def render() -> tuple[bytes, str]:
    return generate_latest(_WithWorker()), CONTENT_TYPE_LATEST  # type: ignore[arg-type]
