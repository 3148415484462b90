"""Helpers of the live tests: a signed-in websocket, and a publisher speaking readings/live.py."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from readings.live import device_status, device_status_message, facility_group, live_batch, live_readings_message


def require_live_layer(request: pytest.FixtureRequest) -> str:
    """The channel layer under test: real Redis whenever CI (or the developer) configures it."""
    backend = str(settings.CHANNEL_LAYERS["default"]["BACKEND"])
    if os.environ.get("ENERGYBOX_REQUIRE_SERVICES") == "1" or os.environ.get("REDIS_URL"):
        request.getfixturevalue("redis_url")  # fails, not skips, in CI when Redis is not configured
        assert backend == "channels_redis.pubsub.RedisPubSubChannelLayer", backend
    return backend


def session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def communicator(
    path: str, *, cookie: bytes | None = None, authorization: bytes | None = None, application: Any = None
) -> WebsocketCommunicator:
    if application is None:
        from energybox.asgi import application
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    if authorization:
        headers.append((b"authorization", authorization))
    return WebsocketCommunicator(application, path, headers=headers)


async def closed_with(ws, code: int) -> dict:
    """The error message and close code of a refused socket."""
    error = await ws.receive_json_from(timeout=5)
    closing = await ws.receive_output(timeout=5)
    assert closing == {"type": "websocket.close", "code": code}
    assert error["type"] == "error" and error["code"] == code
    return error


async def snapshot_of(ws) -> dict:
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "snapshot", message
    return message


def batch_of(*, device_id: int, ts: list[int], values: dict[int, list[float]]) -> dict[str, Any]:
    """A `readings.live` batch entry, as the gateway builds it from a verified frame."""
    return live_batch(
        device_id=device_id,
        channel_ids=np.array(list(values), dtype=np.int64),
        timestamps_ms=np.array(ts, dtype=np.int64),
        values=np.array(list(values.values()), dtype=np.float64).reshape(len(values), len(ts)),
    )


async def publish_readings(*, device_id: int, facility_id: int, ts: list[int], values: dict[int, list[float]]) -> None:
    """Publish as the gateway does: one batch in a message to the device's facility group."""
    await publish_batches(facility_id=facility_id, batches=[batch_of(device_id=device_id, ts=ts, values=values)])


async def publish_batches(*, facility_id: int, batches: list[dict[str, Any]]) -> None:
    message = live_readings_message(facility_id=facility_id, batches=batches)
    await get_channel_layer().group_send(facility_group(facility_id), message)


async def publish_status(*, device_id: int, facility_id: int, online: bool, last_seen_ms: int | None) -> None:
    status = device_status(device_id=device_id, online=online, last_seen_ms=last_seen_ms)
    await publish_statuses(facility_id=facility_id, statuses=[status])


async def publish_statuses(*, facility_id: int, statuses: list[dict[str, Any]]) -> None:
    message = device_status_message(facility_id=facility_id, statuses=statuses)
    await get_channel_layer().group_send(facility_group(facility_id), message)
