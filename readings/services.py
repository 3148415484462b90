"""Writes to the readings store: the ingest seam, ingest itself, rollups, compaction and retention."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import transaction

from devices.models import Channel
from readings import metadata
from readings.batch import ReadingsBatch
from readings.errors import IngestUnavailable, ReadingsError
from readings.rollups import RESOLUTIONS, aggregate, combine, containing_interval
from readings.store import get_store
from readings.store.base import DAY_MS, INTERVAL_MS, Chunk, DirtyMark, Points, RollupRows
from readings.store.sql import merge_points
from readings.wire import encode_batches

logger = logging.getLogger(__name__)

# Publishing retries before the seam gives up and the device keeps its batch.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}


def readings_enqueue(*, batches: Sequence[ReadingsBatch]) -> None:
    """Durably enqueue verified batches; return only once the broker has confirmed them.

    One broker message carries the whole group. With RabbitMQ the queue is durable, the message
    persistent and the publish waits for the publisher confirm; in the embedded mode (no broker)
    the batches are stored in-process before this returns. Raises `IngestUnavailable` when the
    batches are not safe, so the caller must not acknowledge them to the device.
    """
    if not batches:
        return
    from readings.tasks import readings_ingest_task

    payload = encode_batches(batches)
    try:
        readings_ingest_task.apply_async(args=[payload], retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except IngestUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any broker or (embedded) store failure means "not durable"
        raise IngestUnavailable(f"readings could not be enqueued: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class IngestResult:
    stored: int  # readings handed to the store (a redelivered batch is counted again, stored once)
    buckets: int
    dropped_foreign: int  # readings of channels unknown or not owned by the batch's tenant and device
    dropped_expired: int  # readings older than the tenant's raw retention


def readings_ingest(*, batches: Sequence[ReadingsBatch], now_ms: int | None = None) -> IngestResult:
    """Store batches idempotently and mark the 15-minute intervals they touch for rollup."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    all_channels = {int(c) for batch in batches for c in batch.channel_ids}
    metas = metadata.channel_meta(all_channels)
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    tenants: dict[int, int] = {}
    dirty: set[tuple[int, int, int]] = set()
    dropped_foreign = dropped_expired = stored = 0
    for batch in batches:
        timestamps = batch.timestamps_ms
        if len(timestamps) == 0:
            continue
        days = metadata.raw_retention_days(batch.tenant_id)
        cutoff = now_ms - days * DAY_MS if days else None
        # Vectorized per batch: the loop below does dictionary work only, per channel.
        all_fresh = cutoff is None or int(timestamps[0]) >= cutoff
        fresh = None if all_fresh or cutoff is None else timestamps >= cutoff
        present = ~np.isnan(batch.values)
        counts = present.sum(axis=1).tolist()
        n = len(timestamps)
        starts = {t - t % INTERVAL_MS for t in timestamps.tolist()}
        for row, channel_id in enumerate(batch.channel_ids.tolist()):
            meta = metas.get(channel_id)
            if meta is None or meta.tenant_id != batch.tenant_id or meta.device_id != batch.device_id:
                dropped_foreign += counts[row]
                continue
            if counts[row] == n and all_fresh:
                ts, values = timestamps, batch.values[row]
            else:
                keep = present[row] if fresh is None else present[row] & fresh
                ts, values = timestamps[keep], batch.values[row][keep]
                dropped_expired += counts[row] - len(ts)
                if len(ts) == 0:
                    continue
            parts[channel_id].append((ts, values))
            tenants[channel_id] = batch.tenant_id
            stored += len(ts)
            channel_starts = starts if len(ts) == n else {t - t % INTERVAL_MS for t in ts.tolist()}
            for start in channel_starts:
                dirty.add((batch.tenant_id, channel_id, start))
    if dropped_foreign:
        logger.warning("dropped %d readings of channels outside their batch's tenant or device", dropped_foreign)
    chunks = []
    for channel_id, channel_parts in parts.items():
        points = merge_points(channel_parts)
        chunks.append(Chunk(tenants[channel_id], channel_id, points.timestamps_ms, points.values))
    buckets = get_store().write(
        chunks=chunks, dirty=[DirtyMark(tenant_id=t, channel_id=c, start_ms=s) for t, c, s in dirty]
    )
    return IngestResult(stored, buckets, dropped_foreign, dropped_expired)


def _runs(starts: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for start in starts:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + INTERVAL_MS)
        else:
            runs.append((start, start + INTERVAL_MS))
    return runs


def _rollups_for_channel(*, meta: metadata.ChannelMeta, starts: list[int]) -> list[RollupRows]:
    store = get_store()
    tenant_id, channel_id = meta.tenant_id, meta.channel_id
    blocks: list[RollupRows] = []
    touched: set[int] = set()
    for run_start, run_end in _runs(starts):
        points = store.read(tenant_id=tenant_id, channel_ids=[channel_id], start_ms=run_start, end_ms=run_end).get(
            channel_id, Points(np.empty(0, np.int64), np.empty(0, np.float64))
        )
        previous = None
        end = run_end
        if meta.is_counter:
            previous = store.neighbour(tenant_id=tenant_id, channel_id=channel_id, at_ms=run_start, before=True)
            # A late reading changes the delta of the reading after it, which may sit in a later interval.
            following = store.neighbour(tenant_id=tenant_id, channel_id=channel_id, at_ms=run_end, before=False)
            if len(following):
                next_start = int(following.timestamps_ms[0]) - int(following.timestamps_ms[0]) % INTERVAL_MS
                end = next_start + INTERVAL_MS
                extra = store.read(tenant_id=tenant_id, channel_ids=[channel_id], start_ms=next_start, end_ms=end).get(
                    channel_id
                )
                if extra is not None:
                    points = merge_points([(points.timestamps_ms, points.values), (extra.timestamps_ms, extra.values)])
        edges = np.arange(run_start, end + 1, INTERVAL_MS, dtype=np.int64)
        columns = aggregate(points, edges, counter=meta.is_counter, previous=previous)
        if len(columns["start_ms"]):
            blocks.append(RollupRows(tenant_id, channel_id, 1, columns))
            touched.update(columns["start_ms"].tolist())
    store.write_rollups(rows=blocks)
    # Coarser levels are recomputed from the level below, one touched interval at a time.
    for level in (2, 3, 4):
        resolution = RESOLUTIONS[level - 1]
        intervals = sorted({containing_interval(resolution, meta.tz, start) for start in touched})
        coarse: list[RollupRows] = []
        for lo, hi in intervals:
            finer = store.read_rollups(
                tenant_id=tenant_id, channel_ids=[channel_id], resolution=level - 1, start_ms=lo, end_ms=hi
            ).get(channel_id)
            if finer is None:
                continue
            columns = combine(finer.columns, np.array([lo, hi], dtype=np.int64))
            if len(columns["start_ms"]):
                coarse.append(RollupRows(tenant_id, channel_id, level, columns))
        store.write_rollups(rows=coarse)
        blocks += coarse
        touched = {lo for lo, _ in intervals}
    return blocks


def rollups_refresh(*, limit: int = 5000) -> int:
    """Recompute the rollups of the intervals that received data; returns the dirty marks consumed.

    Marks are claimed and rollups written in one transaction, so a crash loses neither.
    """
    store = get_store()
    with transaction.atomic():
        marks = store.claim_dirty(limit=limit)
        by_channel: dict[int, set[int]] = defaultdict(set)
        for mark in marks:
            by_channel[mark.channel_id].add(mark.start_ms)
        metas = metadata.channel_meta(by_channel)
        for channel_id, starts in by_channel.items():
            meta = metas.get(channel_id)
            if meta is None:
                continue  # the channel was deleted; its rollups went with it
            _rollups_for_channel(meta=meta, starts=sorted(starts))
    return len(marks)


def readings_compact(*, max_windows: int = 500) -> int:
    """Merge small ingest buckets into one packed bucket per channel and day; returns windows merged."""
    return get_store().compact(max_windows=max_windows)


def readings_apply_retention(*, now_ms: int | None = None) -> int:
    """Delete raw buckets older than each tenant's `raw_retention_days`; rollups are kept for ever."""
    from accounts.models import Tenant

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    deleted = 0
    store = get_store()
    for tenant_id, days in Tenant.objects.values_list("id", "raw_retention_days"):
        channel_ids = list(Channel.objects.filter(tenant_id=tenant_id).values_list("pk", flat=True))
        for offset in range(0, len(channel_ids), 1000):
            with transaction.atomic():
                deleted += store.delete_raw_before(
                    tenant_id=tenant_id,
                    channel_ids=channel_ids[offset : offset + 1000],
                    before_ms=now_ms - days * DAY_MS,
                )
    return deleted


__all__ = [
    "IngestResult",
    "ReadingsError",
    "readings_apply_retention",
    "readings_compact",
    "readings_enqueue",
    "readings_ingest",
    "rollups_refresh",
]
