"""The simulator's doors: random openings at the configured rate, and one EVENT per change of the door readings."""

from __future__ import annotations

import numpy as np

from gateway import protocol as p
from gateway.doors import DOOR_CLOSED, DOOR_OPEN, DoorEvents, DoorSchedule
from gateway.loads import load_model


def test_the_door_opens_at_about_the_configured_rate_and_each_change_is_one_event():
    rng = np.random.default_rng(3)
    model = DoorSchedule(load_model("refrigeration", rng), rng, opens_per_hour=12, open_s=(20, 60))
    events = DoorEvents([0])
    start, step, samples = 1_764_170_000_000, 2000, 15
    payloads, readings = [], []
    for batch in range(10 * 120):  # ten hours of 30-s batches
        t = start + batch * samples * step + step * np.arange(samples, dtype=np.int64)
        raw = model.state("door", t).astype(np.int64)[None, :]
        readings.append(raw[0])
        payloads += events.edges(start_ms=int(t[0]), interval_ms=step, raw=raw)
    door = np.concatenate(readings) > 0
    changes = np.flatnonzero(door != np.concatenate([[False], door[:-1]]))
    decoded = [p.Event.decode(payload) for payload in payloads]
    assert [(e.time_ms, e.code == DOOR_OPEN) for e in decoded] == [
        (start + int(i) * step, bool(door[i])) for i in changes
    ]
    assert {e.code for e in decoded} == {DOOR_OPEN, DOOR_CLOSED}
    openings = sum(1 for e in decoded if e.code == DOOR_OPEN)
    assert 80 <= openings <= 125  # 12 an hour for ten hours, fewer where openings overlap
    # The rest of the model is the wrapped one's.
    t = start + step * np.arange(5, dtype=np.int64)
    assert model.state("compressor", t).shape == (5,) and model.power(t).shape == (5,)
