"""Smoke tests against the real services. Under ENERGYBOX_REQUIRE_SERVICES=1 they fail when one is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from accounts.tests.factories import TenantFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.services
@pytest.mark.django_db
def test_the_orm_really_talks_to_postgresql(postgresql_url):
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert "PostgreSQL" in cursor.fetchone()[0]
    tenant = TenantFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM accounts_tenant WHERE id = %s", [tenant.pk])
        assert cursor.fetchone()[0] == tenant.name


@pytest.mark.services
def test_a_celery_task_round_trips_through_rabbitmq_to_a_real_worker(rabbitmq_url):
    from energybox.celery import app

    assert app.conf.broker_url.startswith("amqp://")
    queue = f"smoke-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "energybox",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "energybox.settings.test"},
    )
    try:
        token = uuid.uuid4().hex
        result = app.send_task("energybox.ping", args=[token], queue=queue)
        assert result.get(timeout=60) == token
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.services
def test_a_channel_layer_message_round_trips_through_redis(redis_url):
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisPubSubChannelLayer"

    async def round_trip() -> dict:
        channel = await layer.new_channel("smoke.")
        await layer.group_add("smoke-group", channel)
        await layer.group_send("smoke-group", {"type": "smoke.message", "token": "t-1"})
        message = await layer.receive(channel)
        await layer.group_discard("smoke-group", channel)
        return message

    assert async_to_sync(round_trip)()["token"] == "t-1"
