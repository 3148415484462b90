"""A meter's EVENT COUNTER_RESET, over real TLS from the real simulator, is recorded for the store's reset rule."""

from __future__ import annotations

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from gateway.simulator import Meter
from gateway.tests.helpers import Recorder, running_gateway, simulated
from readings.models import CounterReset

pytestmark = pytest.mark.django_db(transaction=True)
ENERGY = 10  # "E import" in METER_12


async def test_a_reported_counter_reset_is_recorded_at_the_time_of_the_first_reading_after_it(
    meter, tmp_path, close_thread_connections
):
    issued, spec = meter
    rng = np.random.default_rng(3)
    resetting = Meter(spec, rng, reset_chance=1.0)  # every batch restarts the counter somewhere
    async with running_gateway(tmp_path, enqueue=Recorder()) as (_, port, ctx):
        device = simulated(spec, port, ctx, max_batches=4, record=True, meter=resetting)
        await device.run(duration_s=20)
    assert len(device.acked) == 4 and not device.unacked
    # Independent: in each batch the device sent, the first reading whose counter shows the restart's zero.
    expected = set()
    for sent in device.acked:
        zeros = np.flatnonzero(sent.raw[ENERGY] == 0)
        expected.add(sent.start_ms + sent.interval_ms * int(zeros[0]))
    recorded = await sync_to_async(
        lambda: set(CounterReset.objects.filter(device_id=issued.device.pk).values_list("at_ms", flat=True))
    )()
    assert len(expected) == 4 and recorded == expected
