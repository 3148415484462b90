"""Readings test data: devices with channels, and batches built the way the gateway builds them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from devices.models import Channel, Device
from devices.tests.factories import DeviceFactory
from readings.batch import ReadingsBatch

BERLIN = ZoneInfo("Europe/Berlin")


def device_with_channels(**kwargs: object) -> tuple[Device, Channel, Channel]:
    """A device with a power channel (W, gauge) and an energy channel (Wh, counter)."""
    device = DeviceFactory(**kwargs)
    power, energy = device.channels.order_by("index")
    return device, power, energy


def batch_for(
    device: Device,
    channels: Sequence[Channel],
    timestamps_ms: Sequence[int] | np.ndarray,
    values: Sequence[Sequence[float]] | np.ndarray,
    *,
    seq: int = 0,
) -> ReadingsBatch:
    return ReadingsBatch(
        tenant_id=device.tenant_id,
        device_id=device.pk,
        seq=seq,
        channel_ids=np.array([c.pk for c in channels], dtype=np.int64),
        timestamps_ms=np.asarray(timestamps_ms, dtype=np.int64),
        values=np.asarray(values, dtype=np.float64).reshape(len(channels), -1),
    )


def local_ms(*args: int, tz: ZoneInfo = BERLIN) -> int:
    """Epoch ms of a local wall-clock time: local_ms(2026, 3, 29, 2, 30)."""
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def rated_power_meter(*, low: float | None = None, high: float = 10_000) -> tuple[Device, Channel]:
    """A device with one total active-power channel (W) whose type is rated [low, high]: its plausible range."""
    from devices.tests.factories import DeviceTypeFactory

    spec: dict[str, object] = {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total", "max": high}
    if low is not None:
        spec["min"] = low
    device = DeviceFactory(device_type=DeviceTypeFactory(channels=[spec]))
    return device, device.channels.get()
