"""Simulated history for the demo: a few weeks of the demo devices' readings, written in bulk.

`make run` calls `demo_history_backfill` the first time it starts, so dashboards, bills and peaks
have content at once. The readings come from the same load models and meters as the live
simulator (`gateway.simulator.Meter`), one sample a minute, and go through the store's interface:
one bulk `write` of buckets per device, then the 15-minute rollups computed by the store's own
rules (`readings.rollups.aggregate`) and the coarser levels combined from them, each written in
bulk. A device that already has readings is left alone, so later starts do nothing.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from django.db import transaction

from devices.models import Device
from devices.quantities import is_counter
from gateway.simulator import ChannelSpec, DeviceSpec, Meter
from readings import metadata
from readings.rollups import Plausibility, aggregate
from readings.services import coarse_rollups
from readings.store import get_store
from readings.store.base import DAY_MS, INTERVAL_MS, Chunk, Points, RollupRows

DEMO_HISTORY_DAYS = 21
DEMO_HISTORY_INTERVAL_MS = 60_000


@dataclass(frozen=True, slots=True)
class BackfillResult:
    devices: int  # devices that got history
    skipped: int  # devices that already had readings
    readings: int
    seconds: float


def device_spec(device: Device) -> DeviceSpec:
    """What the simulator needs to know of a device: its channels and the load it meters (no key)."""
    channels = sorted(device.channels.all(), key=lambda c: c.index)
    kinds = Counter(c.load.kind for c in channels if c.load is not None)
    load_kind = kinds.most_common(1)[0][0] if kinds else ("appliances" if device.facility.kind == "home" else "other")
    return DeviceSpec(
        serial=device.serial,
        private_key=b"",
        channels=tuple(ChannelSpec(c.quantity, c.scale, c.phase) for c in channels),
        load_kind=load_kind,
        name=device.name,
    )


def demo_history_backfill(
    *,
    tenant_slugs: tuple[str, ...],
    days: int = DEMO_HISTORY_DAYS,
    interval_ms: int = DEMO_HISTORY_INTERVAL_MS,
    now_ms: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackfillResult:
    """Write `days` of simulated readings and their rollups for the tenants' devices that have none."""
    began = time.monotonic()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    end_ms = now_ms - now_ms % interval_ms
    start_ms = end_ms - days * DAY_MS
    store = get_store()
    devices = list(
        Device.objects.filter(tenant__slug__in=tenant_slugs)
        .select_related("facility")
        .prefetch_related("channels__load")
        .order_by("serial")
    )
    done = skipped = readings = 0
    for number, device in enumerate(devices, start=1):
        channels = sorted(device.channels.all(), key=lambda c: c.index)
        ids = [c.pk for c in channels]
        if not ids or store.latest(tenant_id=device.tenant_id, channel_ids=ids):
            skipped += 1
            continue
        spec = device_spec(device)
        # The same device gets the same history on every machine.
        rng = np.random.default_rng(zlib.crc32(device.serial.encode()))
        meter = Meter(spec, rng, reset_chance=0.0)
        scales = np.array([c.scale for c in channels], dtype=np.float64)
        chunks: list[Chunk] = []
        columns: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {c.pk: [] for c in channels}
        for day_start in range(start_ms, end_ms, DAY_MS):
            t_ms = np.arange(day_start, min(day_start + DAY_MS, end_ms), interval_ms, dtype=np.int64)
            values = meter.sample(t_ms, interval_ms) * scales[:, None]
            # Buckets never cross a UTC day.
            for day in np.unique(t_ms // DAY_MS):
                keep = t_ms // DAY_MS == day
                for row, channel in enumerate(channels):
                    ts, v = t_ms[keep], values[row][keep]
                    chunks.append(Chunk(device.tenant_id, channel.pk, ts, v))
                    columns[channel.pk].append((ts, v))
            readings += values.size
        tz = ZoneInfo(device.facility.timezone)
        blocks: list[RollupRows] = []
        for channel in channels:
            ts = np.concatenate([part[0] for part in columns[channel.pk]])
            v = np.concatenate([part[1] for part in columns[channel.pk]])
            first = int(ts[0]) - int(ts[0]) % INTERVAL_MS
            last = int(ts[-1]) - int(ts[-1]) % INTERVAL_MS + INTERVAL_MS
            edges = np.arange(first, last + 1, INTERVAL_MS, dtype=np.int64)
            fine = aggregate(
                Points(ts, v),
                edges,
                counter=is_counter(channel.quantity),
                plausibility=Plausibility(channel.plausible_min, channel.plausible_max),
            )
            blocks.append(RollupRows(device.tenant_id, channel.pk, 1, fine))
            blocks.extend(coarse_rollups(tenant_id=device.tenant_id, channel_id=channel.pk, fine=fine, tz=tz))
        with transaction.atomic():
            store.write(chunks=chunks, dirty=[])
            store.write_rollups(rows=blocks)
        done += 1
        if progress:
            progress(f"  demo history: {device.serial} ({number}/{len(devices)}), {days} days of {len(ids)} channels")
    metadata.clear_caches()
    return BackfillResult(devices=done, skipped=skipped, readings=readings, seconds=time.monotonic() - began)
