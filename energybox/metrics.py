"""`/metrics`: Prometheus text of the web process, plus the store's and broker's state at scrape time.

The gateway (gateway/metrics.py) and the worker (energybox/celery.py) export their own counters
on ENERGYBOX_GATEWAY_METRICS_PORT and ENERGYBOX_WORKER_METRICS_PORT. With ENERGYBOX_METRICS_TOKEN
set, a scrape must send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from energybox import dbrouters
from readings.metrics import StoreCollector, scrape_registry


class ReplicaCollector(Collector):
    """The read replica's replay lag and whether the router reads there (only with DATABASE_REPLICA_URL)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not dbrouters.replica_configured():
            return
        state = dbrouters.replica_state()
        yield GaugeMetricFamily(
            "energybox_db_replica_lag_seconds",
            "Replay lag of the PostgreSQL read replica (+Inf when it cannot be reached or is not a replica).",
            value=state.lag_s,
        )
        yield GaugeMetricFamily(
            "energybox_db_replica_in_use",
            "1 while the router sends web reads to the replica (its lag within DATABASE_REPLICA_MAX_LAG_S).",
            value=1.0 if state.in_use else 0.0,
        )


_store = CollectorRegistry(auto_describe=False)
_store.register(StoreCollector())
_store.register(ReplicaCollector())


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(offered.encode(), token.encode())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        return HttpResponse("a metrics token is required\n", status=401, content_type="text/plain")
    body = generate_latest(scrape_registry()) + generate_latest(_store)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
