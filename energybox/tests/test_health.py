from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from readings.health import heartbeat_record
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db


@pytest.fixture
def heartbeat():
    """What beat and a worker leave behind every 10 s (readings.heartbeat)."""
    heartbeat_record()


def test_healthz_reports_each_component(client, heartbeat):
    response = client.get("/healthz")
    body = response.json()
    assert set(body["checks"]) == {"database", "broker", "channel_layer", "workers", "rollups"}
    assert response.status_code == 200, body
    assert all(check["status"] == "ok" for check in body["checks"].values())


def test_healthz_fails_when_no_worker_ran_the_heartbeat_lately(client, settings):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "no worker heartbeat" in response.json()["checks"]["workers"]["error"]
    heartbeat_record(now=timezone.now() - timedelta(seconds=settings.HEALTH_HEARTBEAT_MAX_S + 30))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "s old" in response.json()["checks"]["workers"]["error"]
    heartbeat_record()
    assert client.get("/healthz").json()["checks"]["workers"]["status"] == "ok"


def test_healthz_fails_while_rollups_trail_ingest_and_recovers_once_they_caught_up(client, heartbeat, settings):
    device, power, energy = device_with_channels()
    now_ms = int(time.time() * 1000)
    stamps = now_ms - 60_000 + np.arange(10, dtype=np.int64) * 2_000
    # The embedded worker refreshes rollups itself; here ingest runs alone, as with a stalled worker.
    readings_ingest(batches=[batch_for(device, [power, energy], stamps, np.ones((2, 10)))])
    check = client.get("/healthz").json()["checks"]["rollups"]
    assert check["status"] == "error" and "rollups trail the newest reading" in check["error"]
    rollups_refresh(limit=1000)
    response = client.get("/healthz")
    assert response.json()["checks"]["rollups"] == {"status": "ok", "detail": "ok (lag 0 s)"}
    assert response.status_code == 200


def test_healthz_reports_a_broken_broker_as_an_error(client, settings, heartbeat):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["broker"]["status"] == "error"
    assert body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.services
@pytest.mark.usefixtures("close_thread_connections")
async def test_healthz_probes_leave_no_channel_layer_subscription_behind(async_client, redis_url):
    # Through the ASGI handler, as under Daphne: the view's thread has the server's loop above it.
    import redis.asyncio as redis
    from django.conf import settings

    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    server = redis.Redis.from_url(redis_url)
    for _ in range(3):
        response = await async_client.get("/healthz")
        assert response.json()["checks"]["channel_layer"]["status"] == "ok"
    assert await server.pubsub_channels(f"{prefix}healthz.*") == []
    await server.aclose()
