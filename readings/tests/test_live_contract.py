"""The live message contract: batches travel as bytes and come back as the lists the pages need."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from readings.live import batch_readings, live_batch


def test_a_batch_survives_the_channel_layers_serializer_and_comes_back_as_lists_by_channel():
    entry = live_batch(
        device_id=7,
        channel_ids=np.array([41, 42]),
        timestamps_ms=np.array([1_764_170_000_000, 1_764_170_002_000]),
        values=np.array([[1234.5, -0.25], [230.1, 229.9]]),
    )
    # channels_redis serializes messages with msgpack; bytes stay bytes.
    entry = msgpack.unpackb(msgpack.packb(entry), raw=False)
    ts, values = batch_readings(entry)
    assert ts == [1_764_170_000_000, 1_764_170_002_000]
    assert values == {"41": [1234.5, -0.25], "42": [230.1, 229.9]}


def test_values_that_do_not_match_the_channels_and_samples_are_refused():
    with pytest.raises(ValueError, match="2 channels x 3 samples"):
        live_batch(device_id=1, channel_ids=np.array([1, 2]), timestamps_ms=np.arange(3), values=np.zeros((3, 2)))
