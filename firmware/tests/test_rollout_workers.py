"""Several workers ticking at once: the row locks let exactly one advance a rollout per step."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from firmware.models import FirmwareTransfer, Rollout, RolloutDevice
from firmware.services.rollouts import rollout_tick
from firmware.tests.helpers import T0, Fleet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = "42" * 32


def test_four_workers_ticking_together_start_each_device_once(postgresql_url):
    assert connection.vendor == "postgresql"
    fleet = Fleet(60)
    rollouts = [
        fleet.create(target_kind="devices", target_device_ids=[d.pk for d in fleet.devices[i::3]]) for i in range(3)
    ]
    barrier = threading.Barrier(4)
    started: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                started.append(rollout_tick(now=T0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(started) == 60
    assert FirmwareTransfer.objects.count() == 60
    assert FirmwareTransfer.objects.values("device").distinct().count() == 60
    assert set(RolloutDevice.objects.values_list("attempts", flat=True)) == {1}
    assert {r.state for r in Rollout.objects.filter(pk__in=[r.pk for r in rollouts])} == {Rollout.State.RUNNING}
