"""Prometheus metrics, exposed at /metrics.

With several worker processes (`triage serve --workers N`), each counts in its own memory,
and /metrics would show the counts of whichever worker answered. So `triage serve` then sets
PROMETHEUS_MULTIPROC_DIR before the workers start: prometheus_client, when imported, sees it
and keeps every value in a file per process there, and /metrics adds up the files of all."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Read at import, as prometheus_client itself decides at import where values are kept.
MULTIPROC_DIR = os.environ.get(MULTIPROC_ENV)

REGISTRY = CollectorRegistry()
REQUESTS = Counter("triage_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("triage_http_request_seconds", "HTTP request latency", ["route"], registry=REGISTRY,
                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
PREDICTIONS = Counter("triage_predictions_total", "Suggestions made", ["division", "risk"], registry=REGISTRY)
# A petition sent again with its case number and text (a client retrying after a timeout, a
# clerk's second click) is answered from storage, not by the model: not a prediction, and
# counted here, so that IT sees how often the petition system retries.
REPLAYED = Counter("triage_replayed_total", "Petitions sent again and answered with the triage stored for them",
                   registry=REGISTRY)
# Set from the database by the worker answering /metrics, just before it answers: across
# workers the most recent value is the current one (a maximum could be an old, higher count).
REVIEW_QUEUE = Gauge("triage_review_queue_open", "Open review-queue items", registry=REGISTRY,
                     multiprocess_mode="livemostrecent")


def exposition() -> bytes:
    if MULTIPROC_DIR is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    return generate_latest(registry)


def process_stopped() -> None:
    # A stopped worker's counts stay in the totals; its gauge values ("live" modes) go.
    if MULTIPROC_DIR is not None:
        multiprocess.mark_process_dead(os.getpid(), MULTIPROC_DIR)
