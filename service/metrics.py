"""Prometheus metrics, in a registry owned by each app (no global state between apps).

With several worker processes (PROMETHEUS_MULTIPROC_DIR set before they start), prometheus-client
keeps every value in a per-process file instead, and a scrape adds the files up."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

# prometheus-client is imported where metrics are made, not here: it decides once, at its import,
# between per-process files and in-memory values by PROMETHEUS_MULTIPROC_DIR, and the supervisor
# (which imports this module for the names below) forks workers after setting that variable
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # the variable prometheus-client reads at import
MULTIPROCESS_DIR_PREFIX = "cxr-metrics-"  # the per-process files' folder, made in $TMPDIR


class ServiceMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cxr_requests", "HTTP requests by route and status", ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "cxr_request_latency_seconds", "HTTP request latency", ("route",),
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "cxr_inference_batch_size", "images per onnxruntime run", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        # no label: a counter by predicted label moved by one after each request, so anyone who
        # could read it learnt each user's result
        self.predictions = Counter("cxr_predictions", "images scored", registry=self.registry)
        self.refusals = Counter(
            "cxr_refusals", "inputs refused as not frontal chest X-rays, by what refused them "
            "(a DICOM attribute, or image_check)", ("reason",), registry=self.registry,
        )
        # a gauge at 1 rather than an Info metric, which multiprocess mode does not support
        self.model_info = Gauge(
            "cxr_model_info", "the model being served", ("name", "version", "sha256", "provider"),
            multiprocess_mode="max", registry=self.registry,
        )
        # What an autoscaler scales on (the Helm chart's HorizontalPodAutoscaler). "livesum": the
        # sum over the worker processes alive now; the supervisor drops a dead worker's file
        # (mark_dead), whose requests died with its connections.
        self.requests_in_flight = Gauge(
            "cxr_requests_in_flight", "scoring requests (POST) received and not yet answered",
            multiprocess_mode="livesum", registry=self.registry,
        )
        self.images_queued = Gauge(
            "cxr_images_queued", "images admitted for scoring and not yet scored (queued or running; "
            "CXR_MAX_QUEUED_IMAGES per worker at most)", multiprocess_mode="livesum", registry=self.registry,
        )

    def scrape_registry(self) -> CollectorRegistry:
        """What /metrics exposes: this app's registry, or the sum over all worker processes."""
        from prometheus_client import CollectorRegistry, multiprocess

        if MULTIPROCESS_DIR not in os.environ:
            return self.registry
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return combined


def mark_dead(pid: int) -> None:
    """A worker process has exited: its live gauges no longer count (multiprocess mode only)."""
    if MULTIPROCESS_DIR in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
