"""Rollup arithmetic: calendar intervals in a time zone, and aggregates over NumPy arrays. No Django.

The rules (docs/architecture.md, "Rollups"):
- Intervals are [start, end) in the facility's time zone: 15 minutes, hour, day, month. A local day
  is 23, 24 or 25 hours long; every real UTC offset is a multiple of 15 minutes, so all of them
  are unions of the UTC 15-minute grid, and coarser rollups are exact sums of finer ones.
- Gauges (power, voltage, ...): count, sum (avg = sum / count), min, max, first, last.
- Counters (energy): each reading contributes delta = value - previous value to the interval that
  contains it, the previous reading being the channel's last one before it (possibly in an
  earlier interval). A drop is a counter reset: the reading counts as energy since the reset
  (delta = value), never as a negative spike, and `resets` counts it. A pair of readings further
  apart than GAP_MS is a gap: the energy measured across it is real and counts once, in the
  interval where data resumes, and `gaps` flags that interval.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from readings.store.base import INTERVAL_MS, ROLLUP_FIELDS, Points

GAP_MS = 15 * 60_000
RESOLUTIONS = ("15m", "1h", "1d", "1mo")
HOUR_MS = 3_600_000

Int64Array = npt.NDArray[np.int64]
Columns = dict[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _local_midnight(day: date, tz: ZoneInfo) -> int:
    return _ms(datetime(day.year, day.month, day.day, tzinfo=tz))


def _local_date(at_ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(tz).date()


def interval_edges(resolution: str, tz: ZoneInfo, start_ms: int, end_ms: int) -> Int64Array:
    """Edges e0 < e1 < ... < ek of the intervals covering [start_ms, end_ms); e0 <= start_ms, ek >= end_ms."""
    end_ms = max(end_ms, start_ms + 1)
    if resolution == "15m":
        lo = start_ms - start_ms % INTERVAL_MS
        hi = -(-end_ms // INTERVAL_MS) * INTERVAL_MS
        return np.arange(lo, hi + 1, INTERVAL_MS, dtype=np.int64)
    if resolution == "1h":
        lo = start_ms - start_ms % INTERVAL_MS - HOUR_MS
        hi = -(-end_ms // INTERVAL_MS) * INTERVAL_MS + HOUR_MS
        grid = np.arange(lo, hi + 1, INTERVAL_MS, dtype=np.int64)
        offsets = np.array(
            [
                int(datetime.fromtimestamp(int(g) / 1000, tz=UTC).astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
                * 1000
                for g in grid
            ],
            dtype=np.int64,
        )
        edges = grid[(grid + offsets) % HOUR_MS == 0]
    elif resolution == "1d":
        first, last = _local_date(start_ms, tz), _local_date(end_ms - 1, tz)
        days = (last - first).days + 2
        edges = np.array([_local_midnight(first + timedelta(days=i), tz) for i in range(days)], dtype=np.int64)
    elif resolution == "1mo":
        first, last = _local_date(start_ms, tz).replace(day=1), _local_date(end_ms - 1, tz)
        months: list[int] = []
        year, month = first.year, first.month
        while True:
            months.append(_local_midnight(date(year, month, 1), tz))
            if (year, month) > (last.year, last.month):
                break
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        edges = np.array(months, dtype=np.int64)
    else:
        raise ValueError(f"unknown resolution {resolution!r}")
    lo_index = max(int(np.searchsorted(edges, start_ms, side="right")) - 1, 0)
    hi_index = int(np.searchsorted(edges, end_ms, side="left"))
    return edges[lo_index : hi_index + 1]


@lru_cache(maxsize=65_536)
def containing_interval(resolution: str, tz: ZoneInfo, at_ms: int) -> tuple[int, int]:
    edges = interval_edges(resolution, tz, at_ms, at_ms + 1)
    return int(edges[0]), int(edges[1])


INT_FIELDS = frozenset({"start_ms", "end_ms", "count", "first_ms", "last_ms", "resets", "gaps"})


def _empty_columns() -> Columns:
    columns: Columns = {}
    for name in ROLLUP_FIELDS:
        columns[name] = np.empty(0, dtype=np.int64) if name in INT_FIELDS else np.empty(0, dtype=np.float64)
    return columns


def aggregate(points: Points, edges: Int64Array, *, counter: bool, previous: Points | None = None) -> Columns:
    """Rollup columns of the non-empty intervals between `edges`, from ascending unique readings.

    `previous` is the channel's last reading before `points` (counters need it for the first delta).
    """
    ts, values = points.timestamps_ms, points.values
    if len(ts) == 0:
        return _empty_columns()
    inside = (ts >= edges[0]) & (ts < edges[-1])
    if counter:
        prev_ts = np.concatenate((previous.timestamps_ms[-1:] if previous else np.empty(0, np.int64), ts))
        prev_values = np.concatenate((previous.values[-1:] if previous else np.empty(0, np.float64), values))
        deltas = np.diff(prev_values)
        steps = np.diff(prev_ts)
        if not previous or len(previous) == 0:
            deltas = np.concatenate(([0.0], deltas))
            steps = np.concatenate(([0], steps))
        resets = deltas < 0
        deltas = np.where(resets, values, deltas)
        gaps = steps > GAP_MS
    ts, values = ts[inside], values[inside]
    if len(ts) == 0:
        return _empty_columns()
    index = np.searchsorted(edges, ts, side="right") - 1
    starts = np.flatnonzero(np.diff(index, prepend=-1))
    ends = np.concatenate((starts[1:], [len(ts)])) - 1
    bucket = index[starts]
    columns: Columns = {
        "start_ms": edges[bucket],
        "end_ms": edges[bucket + 1],
        "count": np.diff(np.concatenate((starts, [len(ts)]))).astype(np.int64),
        "sum": np.add.reduceat(values, starts),
        "min": np.minimum.reduceat(values, starts),
        "max": np.maximum.reduceat(values, starts),
        "first_ms": ts[starts],
        "first": values[starts],
        "last_ms": ts[ends],
        "last": values[ends],
    }
    if counter:
        columns["delta"] = np.add.reduceat(deltas[inside], starts)
        columns["resets"] = np.add.reduceat(resets[inside].astype(np.int64), starts)
        columns["gaps"] = np.add.reduceat(gaps[inside].astype(np.int64), starts)
    else:
        columns["delta"] = np.zeros(len(starts))
        columns["resets"] = np.zeros(len(starts), dtype=np.int64)
        columns["gaps"] = np.zeros(len(starts), dtype=np.int64)
    return columns


def combine(finer: Columns, edges: Int64Array) -> Columns:
    """Coarser rollup columns from ascending finer intervals that each lie inside one coarse interval."""
    starts_ms = finer["start_ms"]
    inside = (starts_ms >= edges[0]) & (starts_ms < edges[-1])
    rows = {name: column[inside] for name, column in finer.items()}
    if len(rows["start_ms"]) == 0:
        return _empty_columns()
    index = np.searchsorted(edges, rows["start_ms"], side="right") - 1
    starts = np.flatnonzero(np.diff(index, prepend=-1))
    ends = np.concatenate((starts[1:], [len(index)])) - 1
    bucket = index[starts]
    return {
        "start_ms": edges[bucket],
        "end_ms": edges[bucket + 1],
        "count": np.add.reduceat(rows["count"], starts),
        "sum": np.add.reduceat(rows["sum"], starts),
        "min": np.minimum.reduceat(rows["min"], starts),
        "max": np.maximum.reduceat(rows["max"], starts),
        "first_ms": rows["first_ms"][starts],
        "first": rows["first"][starts],
        "last_ms": rows["last_ms"][ends],
        "last": rows["last"][ends],
        "delta": np.add.reduceat(rows["delta"], starts),
        "resets": np.add.reduceat(rows["resets"], starts),
        "gaps": np.add.reduceat(rows["gaps"], starts),
    }
