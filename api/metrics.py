"""Prometheus metrics: request counts and latency by route, and latency by pipeline stage."""

from __future__ import annotations

import time

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from retrieval.batching import MicroBatcher

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("prism_requests_total", "HTTP requests served.", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("prism_request_seconds", "HTTP request latency.", ["method", "route"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram(
    "prism_stage_seconds", "Latency of one pipeline stage (embed, search, store, ...).", ["operation", "stage"], buckets=LATENCY_BUCKETS
)


def observe_stages(operation: str, timings_ms: dict[str, float]) -> None:
    for stage, ms in timings_ms.items():
        STAGE_SECONDS.labels(operation, stage).observe(ms / 1000)


def metrics_response(batchers: Sequence[MicroBatcher] = ()) -> Response:
    """The process-wide metrics, plus the state of this app's micro-batchers, read at scrape time."""
    registry = CollectorRegistry()
    registry.register(_BatcherCollector(batchers))
    return Response(generate_latest() + generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _BatcherCollector(Collector):
    """Batchers count for themselves (retrieval knows nothing of Prometheus); this reads their counts.
    Items per batch above 1 is what dynamic batching buys."""

    def __init__(self, batchers: Sequence[MicroBatcher]) -> None:
        self.batchers = batchers

    def collect(self):
        families = {
            "batches": CounterMetricFamily("prism_batcher_batches", "Batches run by a micro-batcher.", labels=["batcher"]),
            "items": CounterMetricFamily("prism_batcher_items", "Items run through a micro-batcher.", labels=["batcher"]),
            "largest": GaugeMetricFamily("prism_batcher_largest_batch", "Largest batch so far.", labels=["batcher"]),
            "pending": GaugeMetricFamily("prism_batcher_pending", "Items waiting for a batch.", labels=["batcher"]),
        }
        for batcher in self.batchers:
            stats = batcher.stats
            families["batches"].add_metric([batcher.name], stats.batches)
            families["items"].add_metric([batcher.name], stats.items)
            families["largest"].add_metric([batcher.name], stats.largest_batch)
            families["pending"].add_metric([batcher.name], batcher.pending)
        yield from families.values()


class RequestMetrics:
    """ASGI middleware that counts and times every request, labelled by route template, not raw path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label so a scanner cannot blow up the metric's cardinality.
            template = getattr(route, "path", "unmatched")
            REQUEST_SECONDS.labels(scope["method"], template).observe(time.perf_counter() - started)
            REQUESTS.labels(scope["method"], template, str(status)).inc()
