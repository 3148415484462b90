"""Writes to the readings store: the ingest seam, ingest itself, rollups, compaction and retention."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from devices import services as devices_services
from devices.models import Channel, Device, Facility
from readings import metadata, metrics, partitions
from readings.batch import ReadingsBatch
from readings.errors import IngestUnavailable, ReadingsError, ReadingsQueryError
from readings.models import ConfirmedSpan, CounterReset, DirtyInterval
from readings.rollups import (
    GAP_MS,
    NO_LIMITS,
    RESET_MATCH_MS,
    RESOLUTIONS,
    Columns,
    Plausibility,
    aggregate,
    combine,
    containing_interval,
    interval_edges,
)
from readings.signals import rollups_written
from readings.store import ReadingsStore, get_store
from readings.store.base import DAY_MS, EMPTY, INTERVAL_MS, PACK_SETTLE_MS, Chunk, DirtyMark, Points, RollupRows
from readings.store.sql import log_conflicts, merge_counting, merge_points
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
    started = time.perf_counter()
    try:
        readings_ingest_task.apply_async(args=[payload], retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except IngestUnavailable:
        metrics.ENQUEUE_FAILURES.inc()
        raise
    except Exception as exc:  # noqa: BLE001 - any broker or (embedded) store failure means "not durable"
        metrics.ENQUEUE_FAILURES.inc()
        raise IngestUnavailable(f"readings could not be enqueued: {type(exc).__name__}: {exc}") from exc
    metrics.ENQUEUE_SECONDS.observe(time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class IngestResult:
    stored: int  # readings handed to the store (a redelivered batch is counted again, stored once)
    buckets: int
    dropped_foreign: int  # readings of channels unknown or not owned by the batch's tenant and device
    dropped_expired: int  # readings older than the tenant's raw retention
    # readings whose channel and timestamp already held another value, which was kept (first write wins)
    conflicting: int = 0


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
                dirty.add((batch.tenant_id, batch.device_id, start))
    if dropped_foreign:
        logger.warning("dropped %d readings of channels outside their batch's tenant or device", dropped_foreign)
    chunks = []
    in_group = 0
    for channel_id, channel_parts in parts.items():
        points, conflicts = merge_counting(channel_parts)
        if conflicts:
            log_conflicts(channel_id, conflicts, "batches of one group")
            in_group += conflicts
        chunks.append(Chunk(tenants[channel_id], channel_id, points.timestamps_ms, points.values))
    written = get_store().write(
        chunks=chunks, dirty=[DirtyMark(tenant_id=t, device_id=d, start_ms=s) for t, d, s in dirty]
    )
    return IngestResult(stored, written.buckets, dropped_foreign, dropped_expired, written.conflicting + in_group)


def _runs(starts: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for start in starts:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + INTERVAL_MS)
        else:
            runs.append((start, start + INTERVAL_MS))
    return runs


def _fine_rollups(
    *,
    meta: metadata.ChannelMeta,
    points: Points,
    run_start: int,
    run_end: int,
    previous: Points | None,
    following: Points | None,
    plausibility: Plausibility = NO_LIMITS,
    reported_resets_ms: npt.NDArray[np.int64] | None = None,
) -> Columns:
    """15-minute rollup columns of one channel over a run of dirty intervals.

    For a counter, `previous` is the reading just before the run (its first delta needs it) and
    `following` holds the readings of the interval of the first reading after the run, whose delta
    a late reading changes.
    """
    end = run_end
    if meta.is_counter and following is not None and len(following):
        first = int(following.timestamps_ms[0])
        end = first - first % INTERVAL_MS + INTERVAL_MS
        points = merge_points([(points.timestamps_ms, points.values), (following.timestamps_ms, following.values)])
    edges = np.arange(run_start, end + 1, INTERVAL_MS, dtype=np.int64)
    return aggregate(
        points,
        edges,
        counter=meta.is_counter,
        previous=previous,
        plausibility=plausibility,
        reported_resets_ms=reported_resets_ms,
    )


def _plausibility(meta: metadata.ChannelMeta, spans: dict[int, list[tuple[int, int]]]) -> Plausibility:
    if meta.is_counter or (meta.plausible_min is None and meta.plausible_max is None):
        return NO_LIMITS
    return Plausibility(meta.plausible_min, meta.plausible_max, tuple(spans.get(meta.channel_id, ())))


def _confirmed_spans(metas: Iterable[metadata.ChannelMeta]) -> dict[int, list[tuple[int, int]]]:
    limited = [
        m.channel_id for m in metas if not m.is_counter and (m.plausible_min is not None or m.plausible_max is not None)
    ]
    spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
    if limited:
        rows = ConfirmedSpan.objects.filter(channel_id__in=limited).values_list("channel_id", "start_ms", "end_ms")
        for channel_id, start, end in rows:
            spans[channel_id].append((start, end))
    return spans


def _reported_resets(device_ids: Iterable[int], start_ms: int, end_ms: int) -> dict[int, npt.NDArray[np.int64]]:
    found: dict[int, list[int]] = defaultdict(list)
    rows = CounterReset.objects.filter(
        device_id__in=list(device_ids), at_ms__gte=start_ms - DAY_MS, at_ms__lt=end_ms + DAY_MS
    ).values_list("device_id", "at_ms")
    for device_id, at_ms in rows:
        found[device_id].append(at_ms)
    return {device_id: np.array(sorted(times), dtype=np.int64) for device_id, times in found.items()}


def _first(points: Points | None) -> int | None:
    return int(points.timestamps_ms[0]) if points is not None and len(points) else None


def _last(points: Points | None) -> int | None:
    return int(points.timestamps_ms[-1]) if points is not None and len(points) else None


def rollups_refresh(*, limit: int = 5000) -> int:
    """Recompute the rollups of the intervals that received data; returns the dirty marks consumed.

    Marks are consumed and rollups written in one transaction, so a crash loses neither. Work is
    batched across channels: channels with the same dirty run share one raw read (and, for
    counters, one query for the readings around the run), channels in the same coarse interval
    share one rollup read, and each level is written in one statement.

    Counters need the reading just before each run and must recompute the interval of the first
    reading after it. Both come from the 15-minute rollups around the run (up to date unless dirty)
    or from this batch's own runs of the channel, whichever is nearer: a dirty neighbour interval
    is recomputed anyway, and its own refresh recomputes the intervals next to it.
    """
    store = get_store()
    if not store.snapshot_refresh:
        # PostgreSQL: readers never wait for writers, and SKIP LOCKED lets several workers share the marks.
        with transaction.atomic():
            marks = store.claim_dirty(limit=limit)
            metas, blocks, touched = _fine_level(store, marks)
            store.write_rollups(rows=blocks)
            _coarse_levels(store, metas, touched)
            _announce(blocks)
        return len(marks)
    # SQLite has one writer at a time, and a write transaction holds the lock from its first statement:
    # reading and aggregating inside it made every ingest wait behind the whole refresh (ack stalls every
    # 10 s, issue 18). So the reads and the arithmetic run outside it, on committed data, and only the
    # writes take the lock, every level at once: the coarse levels read the stored finer rollups overlaid
    # with this refresh's own (only the embedded worker writes rollups). Ingest that lands meanwhile is
    # caught by the bucket watermark: its buckets have higher ids (one writer, AUTOINCREMENT), and the
    # marks of the intervals it touched stay for the next refresh.
    watermark, claimed = store.dirty_snapshot(limit=limit)
    metas, blocks, touched = _fine_level(store, [mark for _, mark in claimed])
    blocks += _coarse_levels(store, metas, touched, fresh=blocks)
    with transaction.atomic():
        late = {
            (metas[channel_id].device_id, start)
            for channel_id, first_ms, last_ms in store.buckets_since(watermark=watermark, channel_ids=list(metas))
            for start in range(first_ms - first_ms % INTERVAL_MS, last_ms + 1, INTERVAL_MS)
        }
        store.write_rollups(rows=blocks)
        _announce(blocks)
        done = [mark_id for mark_id, mark in claimed if (mark.device_id, mark.start_ms) not in late]
        store.release_dirty(ids=done)
    return len(done)


def _announce(blocks: Sequence[RollupRows]) -> None:
    spans = [
        (block.channel_id, int(block.columns["start_ms"][0]), int(block.columns["end_ms"][-1]))
        for block in blocks
        if block.resolution == 1 and len(block)  # 15 minutes
    ]
    if spans:
        rollups_written.send(sender=RollupRows, spans=spans)


def _fine_level(
    store: ReadingsStore, marks: Sequence[DirtyMark]
) -> tuple[dict[int, metadata.ChannelMeta], list[RollupRows], dict[int, set[int]]]:
    """The 15-minute rollups of the marked intervals, and the intervals each channel had touched."""
    by_device: dict[int, set[int]] = defaultdict(set)
    for mark in marks:
        by_device[mark.device_id].add(mark.start_ms)
    by_channel: dict[int, set[int]] = {}
    for channel_id, device_id in Channel.objects.filter(device_id__in=by_device).values_list("id", "device_id"):
        by_channel[channel_id] = by_device[device_id]
    metas = metadata.channel_meta(by_channel)
    runs: dict[tuple[int, int, int], list[metadata.ChannelMeta]] = defaultdict(list)
    for channel_id, starts in by_channel.items():
        meta = metas.get(channel_id)
        if meta is None:
            continue  # the channel was deleted; its rollups went with it
        for run_start, run_end in _runs(sorted(starts)):
            runs[(meta.tenant_id, run_start, run_end)].append(meta)

    keys = sorted(runs, key=lambda key: (key[1], key[2], key[0]))
    points: dict[tuple[int, int, int], dict[int, Points]] = {}
    before: dict[tuple[int, int, int], dict[int, Points]] = {}
    after: dict[tuple[int, int, int], dict[int, Points]] = {}
    channel_runs: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for key in keys:
        tenant_id, run_start, run_end = key
        channel_ids = [m.channel_id for m in runs[key]]
        counters = [m.channel_id for m in runs[key] if m.is_counter]
        gauges = [m.channel_id for m in runs[key] if not m.is_counter]
        points[key] = store.read(tenant_id=tenant_id, channel_ids=gauges, start_ms=run_start, end_ms=run_end)
        if counters:
            # Counters recompute the interval before the run too: a gap's estimated share in it
            # (from before late data filled the gap) must go.
            points[key] |= store.read(
                tenant_id=tenant_id, channel_ids=counters, start_ms=run_start - INTERVAL_MS, end_ms=run_end
            )
            before[key] = store.rollup_neighbours(
                tenant_id=tenant_id, channel_ids=counters, at_ms=run_start - INTERVAL_MS, before=True
            )
            after[key] = store.rollup_neighbours(tenant_id=tenant_id, channel_ids=counters, at_ms=run_end, before=False)
        for channel_id in channel_ids:
            channel_runs[channel_id].append(key)

    spans = _confirmed_spans(metas[c] for c in channel_runs)
    counter_devices = {metas[c].device_id for c in channel_runs if metas[c].is_counter}
    resets = (
        _reported_resets(counter_devices, min(k[1] for k in keys) - INTERVAL_MS, max(k[2] for k in keys))
        if counter_devices and keys
        else {}
    )
    blocks: list[RollupRows] = []
    touched: dict[int, set[int]] = defaultdict(set)
    for channel_id, channel_keys in channel_runs.items():
        meta = metas[channel_id]
        for index, key in enumerate(channel_keys):
            tenant_id, run_start, run_end = key
            previous = following = None
            if meta.is_counter:
                run_start -= INTERVAL_MS
                earlier = [points[k].get(channel_id) for k in channel_keys[:index]]
                later = [points[k].get(channel_id) for k in channel_keys[index + 1 :]]
                in_batch_previous = next((p for p in reversed(earlier) if p is not None and len(p)), None)
                in_batch_next = next((p for p in later if p is not None and len(p)), None)
                previous = before[key].get(channel_id)
                if (_last(in_batch_previous) or -1) > (_last(previous) or -1):
                    assert in_batch_previous is not None
                    previous = Points(in_batch_previous.timestamps_ms[-1:], in_batch_previous.values[-1:])
                next_ts = _first(after[key].get(channel_id))
                later_ts = _first(in_batch_next)
                if next_ts is not None and (later_ts is None or next_ts < later_ts):
                    start = next_ts - next_ts % INTERVAL_MS
                    following = store.read(
                        tenant_id=tenant_id, channel_ids=[channel_id], start_ms=start, end_ms=start + INTERVAL_MS
                    ).get(channel_id)
            channel_points = points[key].get(channel_id, EMPTY)
            if meta.is_counter and previous is not None and len(previous):
                # Energy across a gap is shared with the interval of the reading before it.
                previous_ts = int(previous.timestamps_ms[-1])
                next_ts = _first(channel_points) if len(channel_points) else _first(following)
                if next_ts is not None and previous_ts < run_start and next_ts - previous_ts > GAP_MS:
                    run_start = previous_ts - previous_ts % INTERVAL_MS
                    extra = store.read(
                        tenant_id=tenant_id,
                        channel_ids=[channel_id],
                        start_ms=run_start,
                        end_ms=key[1] - INTERVAL_MS,
                    ).get(channel_id, EMPTY)
                    channel_points = merge_points(
                        [(extra.timestamps_ms, extra.values), (channel_points.timestamps_ms, channel_points.values)]
                    )
                    # From the raw data: the rollups before may be stale within this very refresh.
                    previous = store.neighbour(tenant_id=tenant_id, channel_id=channel_id, at_ms=run_start, before=True)
            columns = _fine_rollups(
                meta=meta,
                points=channel_points,
                run_start=run_start,
                run_end=run_end,
                previous=previous,
                following=following,
                plausibility=_plausibility(meta, spans),
                reported_resets_ms=resets.get(meta.device_id),
            )
            if len(columns["start_ms"]):
                blocks.append(RollupRows(tenant_id, channel_id, 1, columns))
                touched[channel_id].update(columns["start_ms"].tolist())
    return metas, blocks, touched


def _overlay(stored: Columns | None, fresh: Columns | None) -> Columns | None:
    """Stored rollup intervals with the freshly computed ones in their place, ascending."""
    if fresh is None or not len(fresh["start_ms"]):
        return stored
    if stored is None or not len(stored["start_ms"]):
        return fresh
    keep = ~np.isin(stored["start_ms"], fresh["start_ms"])
    merged: Columns = {}
    for name, column in fresh.items():
        merged[name] = np.concatenate((stored[name][keep], column))  # type: ignore[assignment]
    order = np.argsort(merged["start_ms"], kind="stable")
    return {name: column[order] for name, column in merged.items()}


def _by_channel(blocks: Sequence[RollupRows]) -> dict[int, Columns]:
    merged: dict[int, Columns | None] = {}
    for block in blocks:
        merged[block.channel_id] = _overlay(merged.get(block.channel_id), block.columns)
    return {channel_id: columns for channel_id, columns in merged.items() if columns is not None}


def _coarse_levels(
    store: ReadingsStore,
    metas: dict[int, metadata.ChannelMeta],
    touched: dict[int, set[int]],
    *,
    fresh: Sequence[RollupRows] | None = None,
) -> list[RollupRows]:
    """Recompute the coarser levels from the level below, one touched interval at a time.

    Without `fresh`, each level is written before the next reads it. With `fresh` (this refresh's
    unwritten 15-minute rows), nothing is written: the level below is the stored one overlaid with
    the fresh rows, and the coarse rows are returned for the caller to write.
    """
    below = None if fresh is None else _by_channel(fresh)
    computed: list[RollupRows] = []
    for level in (2, 3, 4):
        resolution = RESOLUTIONS[level - 1]
        groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for channel_id, starts in touched.items():
            meta = metas[channel_id]
            for lo, hi in {containing_interval(resolution, meta.tz, start) for start in starts}:
                groups[(meta.tenant_id, lo, hi)].append(channel_id)
        coarse: list[RollupRows] = []
        touched = defaultdict(set)
        for (tenant_id, lo, hi), channel_ids in groups.items():
            finer = store.read_rollups(
                tenant_id=tenant_id, channel_ids=channel_ids, resolution=level - 1, start_ms=lo, end_ms=hi
            )
            for channel_id in channel_ids:
                stored = finer[channel_id].columns if channel_id in finer else None
                rows = stored if below is None else _overlay(stored, below.get(channel_id))
                if rows is None:
                    continue
                columns = combine(rows, np.array([lo, hi], dtype=np.int64))
                if len(columns["start_ms"]):
                    coarse.append(RollupRows(tenant_id, channel_id, level, columns))
                    touched[channel_id].add(lo)
        if below is None:
            store.write_rollups(rows=coarse)
        else:
            below = _by_channel(coarse)
        computed += coarse
    return computed


def readings_compact(*, max_windows: int = 500, tenant_id: int | None = None, channel_ids: Sequence[int] = ()) -> int:
    """Merge small ingest buckets into one packed bucket per channel and day; returns windows merged.

    With `tenant_id` and `channel_ids`, only those channels of that tenant (e.g. to count copies after a fault)."""
    return get_store().compact(max_windows=max_windows, tenant_id=tenant_id, channel_ids=channel_ids)


def rollups_pack(*, max_windows: int = 500, now_ms: int | None = None) -> int:
    """Pack the settled rollup windows whose rows changed since their last pack; returns the windows packed."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return get_store().pack_rollups(max_windows=max_windows, before_ms=now_ms - PACK_SETTLE_MS)


def readings_apply_retention(*, now_ms: int | None = None) -> int:
    """Delete raw buckets older than each tenant's `raw_retention_days`; rollups are kept for ever."""
    from accounts.models import Tenant

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    retentions = list(Tenant.objects.values_list("id", "raw_retention_days"))
    if retentions:
        # A month partition goes whole only once every tenant's retention has passed its end; the
        # rows of the tenants with shorter retention in the months kept are deleted below.
        longest_days = max(days for _, days in retentions)
        with transaction.atomic():
            partitions.drop_before(partitions.BUCKETS, before_ms=now_ms - longest_days * DAY_MS)
    deleted = 0
    store = get_store()
    for tenant_id, days in retentions:
        channel_ids = list(Channel.objects.filter(tenant_id=tenant_id).values_list("pk", flat=True))
        for offset in range(0, len(channel_ids), 1000):
            with transaction.atomic():
                deleted += store.delete_raw_before(
                    tenant_id=tenant_id,
                    channel_ids=channel_ids[offset : offset + 1000],
                    before_ms=now_ms - days * DAY_MS,
                )
    return deleted


def readings_partitions_ensure(*, now_ms: int | None = None, months_ahead: int | None = None) -> list[str]:
    """This month's and the next months' partitions of the bucket and rollup tables (PostgreSQL only)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    ahead = settings.READINGS_PARTITIONS_AHEAD_MONTHS if months_ahead is None else months_ahead
    with transaction.atomic():
        return partitions.ensure(now_ms=now_ms, months_ahead=ahead)


# --- Data quality: reported resets, confirmed readings, plausible ranges ------------------------


def _mark_dirty(*, tenant_id: int, device_id: int, start_ms: int, end_ms: int) -> int:
    """Mark the device's 15-minute intervals overlapping [start_ms, end_ms) for recomputation."""
    first = start_ms - start_ms % INTERVAL_MS
    marks = [
        DirtyInterval(tenant_id=tenant_id, device_id=device_id, start_ms=at) for at in range(first, end_ms, INTERVAL_MS)
    ]
    DirtyInterval.objects.bulk_create(marks, ignore_conflicts=True, batch_size=1000)
    return len(marks)


def readings_counter_reset_record(*, tenant_id: int, device_id: int, at_ms: int) -> None:
    """A device reported that its energy counters restarted (protocol EVENT COUNTER_RESET) at `at_ms`.

    The drop of each of its counters within RESET_MATCH_MS of that moment is then a reset whatever
    its size; the intervals around it are recomputed.
    """
    with transaction.atomic():
        CounterReset.objects.get_or_create(tenant_id=tenant_id, device_id=device_id, at_ms=at_ms)
        _mark_dirty(
            tenant_id=tenant_id, device_id=device_id, start_ms=at_ms - RESET_MATCH_MS, end_ms=at_ms + RESET_MATCH_MS
        )


MAX_CONFIRM_SPAN_MS = 31 * DAY_MS


def _managed_channel(*, access: Access, channel_id: int) -> Channel:
    channel = Channel.objects.filter(tenant_id=access.tenant_id, pk=channel_id).select_related("device").first()
    if channel is None or not access.sees_facility(channel.device.facility_id):
        raise Channel.DoesNotExist(f"No channel {channel_id}.")
    if not access.manages_facility(channel.device.facility_id):
        raise TenantAccessDenied("You may not change this channel's readings.")
    return channel


def readings_confirm(
    *, access: Access, channel_id: int, start: datetime, end: datetime, confirmed_by: str = "", note: str = ""
) -> ConfirmedSpan:
    """Confirm a channel's readings in [start, end) although they lie outside its plausible range.

    From then on they count in the rollups, peaks and bills: the intervals are recomputed. At most
    31 days per confirmation; another tenant's channel fails like a missing one.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ReadingsQueryError("start and end must be time-zone aware")
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    if end_ms <= start_ms:
        raise ReadingsQueryError("end must be after start")
    if end_ms - start_ms > MAX_CONFIRM_SPAN_MS:
        raise ReadingsQueryError("confirm at most 31 days at a time")
    channel = _managed_channel(access=access, channel_id=channel_id)
    with transaction.atomic():
        # A replayed confirmation finds the first one and stores nothing more.
        span, _ = ConfirmedSpan.objects.get_or_create(
            tenant_id=channel.tenant_id,
            channel_id=channel.pk,
            start_ms=start_ms,
            end_ms=end_ms,
            defaults={"confirmed_by": confirmed_by[:150], "note": note[:500]},
        )
        _mark_dirty(tenant_id=channel.tenant_id, device_id=channel.device_id, start_ms=start_ms, end_ms=end_ms)
    return span


def channel_plausible_range_set(
    *,
    access: Access,
    channel_id: int,
    low: float | None,
    high: float | None,
    recompute_start: datetime | None = None,
    recompute_end: datetime | None = None,
) -> Channel:
    """Set a channel's plausible range; readings outside it are flagged and kept out of peaks and bills.

    Intervals computed from now on use it; `recompute_start`/`recompute_end` (at most 31 days)
    also recompute a past period.
    """
    channel = _managed_channel(access=access, channel_id=channel_id)
    channel.plausible_min, channel.plausible_max = low, high
    try:
        channel.full_clean()
    except ValidationError as exc:
        raise ReadingsQueryError(" ".join(exc.messages)) from exc
    window: tuple[int, int] | None = None
    if recompute_start is not None and recompute_end is not None:
        if recompute_start.tzinfo is None or recompute_end.tzinfo is None:
            raise ReadingsQueryError("start and end must be time-zone aware")
        window = (int(recompute_start.timestamp() * 1000), int(recompute_end.timestamp() * 1000))
        if not 0 < window[1] - window[0] <= MAX_CONFIRM_SPAN_MS:
            raise ReadingsQueryError("recompute a period of at most 31 days, with its end after its start")
    with transaction.atomic():
        channel.save(update_fields=["plausible_min", "plausible_max"])
        if window is not None:
            _mark_dirty(tenant_id=channel.tenant_id, device_id=channel.device_id, start_ms=window[0], end_ms=window[1])
    metadata.clear_caches()
    return channel


# --- Re-computation after a time-zone change ---------------------------------------------------

# Other processes cache a channel's zone for up to metadata.CACHE_SECONDS: a refresh there may
# still write a coarse interval in the old zone, so the re-zoning runs once more after that.
REZONE_AGAIN_AFTER_S = metadata.CACHE_SECONDS + 15


def rollups_rezone(*, facility_id: int | None = None, device_id: int | None = None, again: bool = True) -> int:
    """Recompute the hour, day and month rollups of a facility's (or a device's) channels in its zone.

    Call it after a facility's time zone changed or a device moved to another facility. The 15-minute
    rollups lie on the UTC 15-minute grid whatever the zone, so they stay; the coarser levels are
    deleted and combined again from them, so no raw data is needed. Returns the channels done.
    """
    channels = Channel.objects.all()
    if facility_id is not None:
        channels = channels.filter(device__facility_id=facility_id)
    elif device_id is not None:
        channels = channels.filter(device_id=device_id)
    else:
        raise ValueError("name a facility or a device")
    rows = list(channels.values_list("id", "tenant_id", "device__facility__timezone"))
    metadata.clear_caches()
    store = get_store()
    with transaction.atomic():
        for channel_id, tenant_id, zone in rows:
            store.delete_rollups(tenant_id=tenant_id, channel_ids=[channel_id], resolutions=[2, 3, 4])
            fine = store.read_rollups(
                tenant_id=tenant_id, channel_ids=[channel_id], resolution=1, start_ms=0, end_ms=2**62
            ).get(channel_id)
            if fine is not None and len(fine):
                store.write_rollups(
                    rows=coarse_rollups(
                        tenant_id=tenant_id, channel_id=channel_id, fine=fine.columns, tz=ZoneInfo(zone)
                    )
                )
        if again and rows:
            from readings.tasks import rollups_rezone_task

            transaction.on_commit(
                lambda: rollups_rezone_task.apply_async(
                    kwargs={"facility_id": facility_id, "device_id": device_id}, countdown=REZONE_AGAIN_AFTER_S
                )
            )
    return len(rows)


def facility_update_rezoned(*, access: Access, facility: Facility, **fields: Any) -> Facility:
    """`facility_update`, and the facility's rollups recomputed when its time zone changed.

    The portal and the API both change facilities through here, so a new zone never leaves days,
    months and bills cut at the old zone's midnights.
    """
    old_zone = facility.timezone
    with transaction.atomic():
        facility = devices_services.facility_update(access=access, facility=facility, **fields)
        if facility.timezone != old_zone:
            rollups_rezone(facility_id=facility.pk)
    return facility


def device_relocate_rezoned(
    *, access: Access, device: Device, facility: Facility, user_id: int | None = None
) -> Device:
    """`device_relocate`, and the device's rollups recomputed when the new facility lies in another zone."""
    old_zone = device.facility.timezone
    with transaction.atomic():
        device = devices_services.device_relocate(access=access, device=device, facility=facility, user_id=user_id)
        if facility.timezone != old_zone:
            rollups_rezone(device_id=device.pk)
    return device


def coarse_rollups(*, tenant_id: int, channel_id: int, fine: Columns, tz: ZoneInfo) -> list[RollupRows]:
    """The hour, day and month rollups of one channel from its ascending 15-minute rollup columns."""
    blocks: list[RollupRows] = []
    finer = fine
    for level in (2, 3, 4):
        if len(finer["start_ms"]) == 0:
            break
        edges = interval_edges(RESOLUTIONS[level - 1], tz, int(finer["start_ms"][0]), int(finer["end_ms"][-1]))
        finer = combine(finer, edges)
        blocks.append(RollupRows(tenant_id, channel_id, level, finer))
    return blocks


__all__ = [
    "IngestResult",
    "channel_plausible_range_set",
    "coarse_rollups",
    "device_relocate_rezoned",
    "facility_update_rezoned",
    "readings_confirm",
    "readings_counter_reset_record",
    "rollups_rezone",
    "ReadingsError",
    "readings_apply_retention",
    "readings_partitions_ensure",
    "readings_compact",
    "readings_enqueue",
    "readings_ingest",
    "rollups_refresh",
]
