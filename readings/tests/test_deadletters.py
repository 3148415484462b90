"""Dead letters for real: a worker process, this module's own RabbitMQ node, PostgreSQL."""

from __future__ import annotations

import json
import urllib.request
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from readings import deadletters
from readings.store import get_store
from readings.tasks import readings_ingest_task
from readings.tests.brokers import free_port
from readings.tests.factories import batch_for, device_with_channels
from readings.tests.processes import celery_broker, start_worker, stop, wait_until
from readings.wire import encode_batches

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]
T0 = 1_764_000_000_000 - 1_764_000_000_000 % 86_400_000


def _listed() -> list[dict]:
    out = StringIO()
    call_command("deadletters", "list", "--json", stdout=out)
    return json.loads(out.getvalue())


def _stored(channels) -> int:
    connection.close()
    stored = get_store().read(
        tenant_id=channels[0].tenant_id, channel_ids=[c.pk for c in channels], start_ms=T0, end_ms=T0 + 86_400_000
    )
    return sum(len(points) for points in stored.values())


def _dead_letters_counted(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310
        for family in text_string_to_metric_families(response.read().decode()):
            for sample in family.samples:
                if sample.name == "energybox_ingest_dead_letters_total":
                    return sample.value
    return 0.0


def test_a_malformed_message_is_dead_lettered_counted_listed_and_a_replay_stores_what_can_be_stored(
    tmp_path, postgresql_url, own_rabbitmq
):
    device, power, energy = device_with_channels()
    good = encode_batches([batch_for(device, [power, energy], T0 + np.arange(4) * 2_000, np.ones((2, 4)))])
    metrics_port = free_port()
    (tmp_path / "prom").mkdir()
    env = {
        "CELERY_BROKER_URL": own_rabbitmq.url,
        "ENERGYBOX_WORKER_METRICS_PORT": str(metrics_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
    }
    with celery_broker(own_rabbitmq.url):
        worker_process = start_worker(concurrency=2, env=env, log=tmp_path / "worker.log")
        try:
            malformed = readings_ingest_task.apply_async(args=["EBR1 but not a readings payload"])
            wait_until(lambda: deadletters.deadletters_count() == 1, timeout=90, what="the dead letter")
            # At-least-once dead-lettering: the ingest queue lets go once the dead-letter queue confirmed.
            wait_until(lambda: own_rabbitmq.queue_counts("readings") == (0, 0), timeout=30, what="the ingest queue")
            wait_until(lambda: _dead_letters_counted(metrics_port) == 1, timeout=30, what="the worker's counter")
            listed = _listed()
            assert [(d["id"], d["task"], d["reason"], d["deaths"]) for d in listed] == [
                (malformed.id, "readings.ingest", "rejected", 1)
            ]
            assert len(_listed()) == 1, "listing leaves the dead letters in place"

            # A message an older worker could not read (it did not know the version) waits beside it;
            # once a worker that reads it runs, replaying it by id stores it.
            older = readings_ingest_task.apply_async(
                args=[good], exchange=deadletters.DEAD_EXCHANGE, routing_key=deadletters.DEAD_QUEUE
            )
            wait_until(lambda: deadletters.deadletters_count() == 2, timeout=30, what="the second dead letter")
            assert _stored([power, energy]) == 0
            call_command("deadletters", "replay", "--id", older.id, stdout=StringIO())
            wait_until(lambda: _stored([power, energy]) == 8, timeout=90, what="the replayed readings")
            assert [d["id"] for d in _listed()] == [malformed.id]

            # The malformed one, replayed, is refused again: back among the dead letters, nothing stored.
            call_command("deadletters", "replay", stdout=StringIO())
            wait_until(lambda: _dead_letters_counted(metrics_port) == 2, timeout=60, what="the second rejection")
            wait_until(lambda: deadletters.deadletters_count() == 1, timeout=30, what="the dead letter to return")
            assert [(d["id"], d["deaths"]) for d in _listed()] == [(malformed.id, 2)]
            assert _stored([power, energy]) == 8
        finally:
            stop(worker_process)


def test_without_rabbitmq_the_command_says_why_it_cannot_help(settings):
    from django.core.management.base import CommandError

    settings.CELERY_BROKER_URL = ""
    with pytest.raises(CommandError, match="dead letters need RabbitMQ"):
        call_command("deadletters", "list")
