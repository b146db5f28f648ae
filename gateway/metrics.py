"""Prometheus metrics of the gateway (served on --metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECEIVED = Counter("cxr_gateway_received", "instances received by C-STORE (replays included)")
SKIPPED = Counter("cxr_gateway_skipped", "instances not scored, by the rule that passed them over", ["attribute"])
SCORED = Counter("cxr_gateway_scored", "images the service scored")
REFUSED = Counter("cxr_gateway_refused", "images the service refused as not a frontal chest X-ray")
WRITTEN = Counter("cxr_gateway_written", "jobs whose SR and SC were stored in the PACS")
FAILED = Counter("cxr_gateway_failed", "failed attempts (retried or dead-lettered)", ["stage"])
DEAD = Counter("cxr_gateway_dead_lettered", "jobs given up after --max-attempts")
QUEUE = Gauge("cxr_gateway_queue_depth", "jobs waiting: received, processing or failed awaiting a retry")
RECEIPT_TO_WRITTEN = Histogram(
    "cxr_gateway_receipt_to_written_seconds", "from the instance's receipt to its results stored in the PACS",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 900, 3600))


def serve(host: str, port: int) -> None:
    start_http_server(port, addr=host)
