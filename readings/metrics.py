"""Prometheus metrics of ingest and the store (prometheus_client).

Process metrics (counted where they happen: the gateway's enqueue, the worker's dead letters) and
a collector that reads the store's and the broker's state at scrape time (queue depth, ingest lag,
rollup lag, the beat/worker heartbeat). The web process registers the collector; the gateway and
worker export their own counters (see energybox/metrics.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from readings import health

logger = logging.getLogger(__name__)

ENQUEUE_SECONDS = Histogram(
    "energybox_ingest_enqueue_seconds",
    "Time until the broker confirmed an ingest message (readings_enqueue).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ENQUEUE_FAILURES = Counter(
    "energybox_ingest_enqueue_failures_total", "Ingest messages the broker did not confirm (devices resend)."
)
DEAD_LETTERS = Counter(
    "energybox_ingest_dead_letters_total",
    "Ingest messages that can never be stored (malformed, unknown version), moved to the dead-letter queue.",
)


class StoreCollector(Collector):
    """Queue depth, ingest and rollup lag, heartbeat age: read at every scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._lags()
        yield from self._queues()

    def _lags(self) -> Iterator[GaugeMetricFamily]:
        values = {
            "energybox_ingest_lag_seconds": ("Age of the newest stored reading.", health.ingest_lag_s),
            "energybox_rollup_lag_seconds": (
                "How far the newest 15-minute rollup trails the newest stored reading.",
                health.rollup_lag_s,
            ),
            "energybox_worker_heartbeat_age_seconds": (
                "Age of the last heartbeat task beat scheduled and a worker ran.",
                health.heartbeat_age_s,
            ),
        }
        for name, (documentation, read) in values.items():
            try:
                value = read()
            except Exception:  # noqa: BLE001 - a scrape reports what it can; the log keeps why
                logger.exception("metrics: %s could not be read", name)
                continue
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=value)

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        from readings import deadletters

        if not deadletters.dead_letters_supported():
            return
        from celery import current_app as app

        family = GaugeMetricFamily(
            "energybox_queue_messages",
            "Messages waiting in a broker queue (ready, not yet delivered).",
            labels=["queue"],
        )
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                for queue in ("readings", deadletters.DEAD_QUEUE):
                    channel = conn.channel()
                    try:
                        _, messages, _ = channel.queue_declare(queue, passive=True)
                        family.add_metric([queue], messages)
                    except Exception:  # noqa: BLE001 - a queue not declared yet has no depth
                        logger.debug("metrics: queue %s is not declared yet", queue)
                    finally:
                        channel.close()
        except Exception:  # noqa: BLE001 - the broker is down: /healthz says so; no depth to report
            logger.warning("metrics: the broker could not be reached for queue depths")
            return
        yield family


def scrape_registry() -> CollectorRegistry:
    """This process's metrics, or, in multiprocess mode, those of every process sharing the folder.

    Multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before start) is for pre-forking servers: the
    Celery prefork pool's children count dead letters, the parent exports them.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


_exporters: dict[int, object] = {}


def exporter_start(*, port: int, addr: str = "127.0.0.1") -> None:
    """Serve this process's metrics on http://addr:port/metrics (once per port and process)."""
    if port in _exporters:
        return
    server, _ = start_http_server(port, addr=addr, registry=scrape_registry())
    _exporters[port] = server
    logger.info("metrics: exporting on http://%s:%d/metrics", addr, port)
