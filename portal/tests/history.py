"""Plausible stored history for the live pages' tests: every channel of a facility, through the real store."""

from __future__ import annotations

import numpy as np

from devices.models import Device, Facility
from readings.batch import ReadingsBatch
from readings.services import readings_ingest, rollups_refresh

_BASE_KW = {"mains": 20.0, "refrigeration": 7.0, "hvac": 5.0, "lighting": 3.0, "fuel_pumps": 4.0}


def _device_series(device: Device, ts: np.ndarray, rng: np.random.Generator) -> ReadingsBatch:
    channels = list(device.channels.select_related("load").order_by("index"))
    kind = next((c.load.kind for c in channels if c.load is not None), "other")
    minutes = (ts - ts[0]) / 60_000
    total_w = 1000 * _BASE_KW.get(kind, 2.0) * (1 + 0.08 * np.sin(minutes / 2.5)) + rng.normal(0, 120, len(ts))
    rows = []
    phase_shares = {"L1": 0.36, "L2": 0.33, "L3": 0.31}
    for channel in channels:
        phase_share = phase_shares.get(channel.phase, 1.0)
        if channel.quantity == "active_power":
            rows.append(total_w * phase_share)
        elif channel.quantity == "voltage":
            rows.append(230 + rng.normal(0, 0.8, len(ts)))
        elif channel.quantity == "current":
            rows.append(total_w * phase_share / 230)
        elif channel.quantity == "power_factor":
            rows.append(np.clip(0.95 + rng.normal(0, 0.01, len(ts)), 0, 1))
        elif channel.quantity == "active_energy":
            rows.append(5_000_000 + np.cumsum(total_w * np.diff(ts, prepend=ts[0]) / 3_600_000))
        elif channel.quantity == "temperature":
            rows.append(3 + 0.6 * np.sin(minutes / 3) + rng.normal(0, 0.05, len(ts)))
        else:
            rows.append(55 + rng.normal(0, 0.5, len(ts)))
    return ReadingsBatch(
        tenant_id=device.tenant_id,
        device_id=device.pk,
        seq=0,
        channel_ids=np.array([c.pk for c in channels], dtype=np.int64),
        timestamps_ms=ts.astype(np.int64),
        values=np.vstack(rows).astype(np.float64),
    )


def seed_history(facility: Facility, *, now_ms: int, minutes: int = 14, earlier_hours: int = 3) -> None:
    """`minutes` of 2-second readings up to `now_ms`, and `earlier_hours` of 1-minute ones before."""
    rng = np.random.default_rng(facility.pk)
    recent = np.arange(now_ms - minutes * 60_000, now_ms, 2_000)
    earlier = np.arange(recent[0] - earlier_hours * 3_600_000, recent[0], 60_000)
    timeline = np.concatenate((earlier, recent))  # one timeline, so energy counters never run backwards
    readings_ingest(batches=[_device_series(device, timeline, rng) for device in facility.devices.all()])
    rollups_refresh()
