from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_reports_each_component(client):
    response = client.get("/healthz")
    body = response.json()
    assert set(body["checks"]) == {"database", "broker", "channel_layer"}
    assert response.status_code == 200, body
    assert all(check["status"] == "ok" for check in body["checks"].values())


def test_healthz_reports_a_broken_broker_as_an_error(client, settings):
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
