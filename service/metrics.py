"""Prometheus metrics, exposed at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
REQUESTS = Counter("triage_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("triage_http_request_seconds", "HTTP request latency", ["route"], registry=REGISTRY,
                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
PREDICTIONS = Counter("triage_predictions_total", "Suggestions made", ["division", "risk"], registry=REGISTRY)
REVIEW_QUEUE = Gauge("triage_review_queue_open", "Open review-queue items", registry=REGISTRY)
