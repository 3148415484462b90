"""`/metrics`: Prometheus text of the web process, plus the store's and broker's state at scrape time.

The gateway (gateway/metrics.py) and the worker (energybox/celery.py) export their own counters
on ENERGYBOX_GATEWAY_METRICS_PORT and ENERGYBOX_WORKER_METRICS_PORT. With ENERGYBOX_METRICS_TOKEN
set, a scrape must send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from readings.metrics import StoreCollector, scrape_registry

_store = CollectorRegistry(auto_describe=False)
_store.register(StoreCollector())


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
