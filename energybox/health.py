"""`/healthz`: the database, the broker, the channel layer, beat and workers, rollup lag, the replica.

Each check is ok, a warning or an error, and any error makes the answer 503. A read replica
(DATABASE_REPLICA_URL) that lags beyond its bound or is down is a warning, not an error: the router
then reads the primary, so the site still answers, and a 503 would take every web process out of
the load balancer for a fault the platform already works around. Beat and worker liveness is the
age of the heartbeat task beat schedules and a worker runs (readings/health.py): the same proof
with a broker and in the embedded mode, where `manage.py runtaskworker` runs both.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from energybox import dbrouters
from energybox.celery import app as celery_app
from readings import health as readings_health


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return f"ok ({connection.vendor})"


def check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # No broker to probe: ingest runs in the caller and is as healthy as the database; the
        # periodic tasks' worker is the "workers" check's business.
        return "ok (no broker: ingest runs in-process)"
    with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.ENERGYBOX_HEALTH_TIMEOUT_S)
        return f"ok ({conn.transport_cls})"


def check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")

    async def round_trip() -> None:
        channel = await layer.new_channel("healthz.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "healthz.ping", "token": token})
        message = await layer.receive(channel)
        if message.get("token") != token:
            raise RuntimeError("channel layer returned another message")

    async def bounded() -> None:
        await asyncio.wait_for(round_trip(), timeout=settings.ENERGYBOX_HEALTH_TIMEOUT_S)

    # On a loop of its own, closed afterwards: the Redis pub/sub layer keeps a subscription per
    # channel for the life of the loop that made it, and a probe every few seconds must not leave
    # one behind on the server's loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, bounded()).result(timeout=settings.ENERGYBOX_HEALTH_TIMEOUT_S + 2)
    return f"ok ({type(layer).__name__})"


def check_workers() -> str:
    age = readings_health.heartbeat_age_s()
    command = "manage.py runtaskworker --beat" if settings.CELERY_TASK_ALWAYS_EAGER else "a worker and celery beat"
    if age is None:
        raise RuntimeError(f"no worker heartbeat was ever recorded: is {command} running?")
    if age > settings.HEALTH_HEARTBEAT_MAX_S:
        raise RuntimeError(f"the last worker heartbeat is {age:.0f} s old: is {command} running?")
    return f"ok (heartbeat {age:.0f} s ago)"


def check_rollups() -> str:
    lag = readings_health.rollup_lag_s()
    if lag is None:
        return "ok (no recent readings)"
    if lag > settings.HEALTH_ROLLUP_LAG_MAX_S:
        raise RuntimeError(f"rollups trail the newest reading by {lag:.0f} s")
    return f"ok (lag {lag:.0f} s)"


class Degraded(Exception):  # noqa: N818 - a state, not a failure
    """A check whose component is impaired while the platform works around it (a warning)."""


def check_replica() -> str:
    state = dbrouters.replica_state()
    if state.lag_s == float("inf"):
        raise Degraded("the read replica cannot be reached or is not replaying: reads go to the primary")
    if not state.in_use:
        raise Degraded(
            f"the read replica lags {state.lag_s:.1f} s (bound {state.max_lag_s:.0f} s): reads go to the primary"
        )
    return f"ok (lag {state.lag_s:.1f} s, reads on the replica)"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "channel_layer": check_channel_layer,
    "workers": check_workers,
    "rollups": check_rollups,
}


def active_checks() -> dict[str, Callable[[], str]]:
    return {**CHECKS, "replica": check_replica} if dbrouters.replica_configured() else dict(CHECKS)


def run_checks() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, check in active_checks().items():
        try:
            results[name] = {"status": "ok", "detail": check()}
        except Degraded as exc:
            results[name] = {"status": "warning", "detail": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure
            results[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    if "replica" in results:
        state = dbrouters.replica_state()
        lag = state.lag_s if state.lag_s != float("inf") else None
        results["replica"].update(lag_s=None if lag is None else round(lag, 3), in_use=state.in_use)
    return results


def healthz(request: HttpRequest) -> JsonResponse:
    results = run_checks()
    healthy = all(r["status"] != "error" for r in results.values())
    return JsonResponse({"status": "ok" if healthy else "error", "checks": results}, status=200 if healthy else 503)
