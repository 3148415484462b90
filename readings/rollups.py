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

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from readings.store.base import INTERVAL_MS, ROLLUP_FIELDS, Points

GAP_MS = 15 * 60_000
# A counter reading below this share of the previous value is a reset even without a report.
RESET_FRACTION = 0.1
# A reported reset (protocol EVENT COUNTER_RESET) matches a drop within this much of its time.
RESET_MATCH_MS = 15 * 60_000
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


INT_FIELDS = frozenset({"start_ms", "end_ms", "count", "first_ms", "last_ms", "resets", "gaps", "flags"})


class Flag(enum.IntFlag):
    """What a rollup interval's figures rest on, besides plain readings (`flags`, a bit mask)."""

    RESET = 1  # a counter reset: the energy since the reset is counted
    GAP = 2  # data resumed after more than GAP_MS of silence in this interval
    ESTIMATED = 4  # part of the energy is a share of a gap's energy, spread over the missing time
    IMPLAUSIBLE = 8  # readings outside the channel's plausible range were left out
    GLITCH = 16  # a counter stepped back without a reset: zero energy, the sample ignored


FLAG_NAMES: tuple[tuple[str, int], ...] = tuple((flag.name.lower(), int(flag)) for flag in Flag)  # type: ignore[union-attr]


def flag_names(mask: int) -> list[str]:
    return [name for name, bit in FLAG_NAMES if mask & bit]


@dataclass(frozen=True, slots=True)
class Plausibility:
    """A gauge channel's plausible range; readings outside it count only inside a confirmed span."""

    low: float | None = None
    high: float | None = None
    confirmed: tuple[tuple[int, int], ...] = ()  # [start_ms, end_ms) spans a user confirmed

    def implausible(self, ts: Int64Array, values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        out = np.zeros(len(values), dtype=bool)
        if self.low is not None:
            out |= values < self.low
        if self.high is not None:
            out |= values > self.high
        if out.any():
            for start, end in self.confirmed:
                out &= ~((ts >= start) & (ts < end))
        return out


NO_LIMITS = Plausibility()


def _empty_columns() -> Columns:
    columns: Columns = {}
    for name in ROLLUP_FIELDS:
        columns[name] = np.empty(0, dtype=np.int64) if name in INT_FIELDS else np.empty(0, dtype=np.float64)
    return columns


@dataclass(frozen=True, slots=True)
class CounterSteps:
    deltas: npt.NDArray[np.float64]  # energy each reading adds (a reset: its value; a glitch: 0)
    resets: npt.NDArray[np.bool_]
    glitches: npt.NDArray[np.bool_]
    previous_ts: Int64Array  # time of the reading before each one (itself for the very first)


def counter_steps(
    points: Points, *, previous: Points | None, reported_resets_ms: Int64Array | None = None
) -> CounterSteps:
    """Per reading of an energy counter: the energy it adds, and whether it is a reset or a glitch.

    The rule (docs/architecture.md, "Counter resets and glitches"): a reading below the one before
    it is a reset when the device reported one within RESET_MATCH_MS of that step, or when it is
    below RESET_FRACTION of the reading before; a reset adds the energy since the reset (its value).
    Any other step back is a glitch: it adds nothing. Each reading depends only on the one before,
    so late data changes no more than the interval of the next reading.
    """
    ts, values = points.timestamps_ms, points.values
    n = len(ts)
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return CounterSteps(np.zeros(0), empty, empty, np.empty(0, dtype=np.int64))
    if previous is not None and len(previous):
        previous_ts = np.concatenate((previous.timestamps_ms[-1:], ts[:-1]))
        before = np.concatenate((previous.values[-1:], values[:-1]))
    else:
        previous_ts = np.concatenate((ts[:1], ts[:-1]))
        before = np.concatenate((values[:1], values[:-1]))
    drops = values < before
    resets = drops & (values < RESET_FRACTION * before)
    if reported_resets_ms is not None and len(reported_resets_ms) and drops.any():
        lo = np.searchsorted(reported_resets_ms, previous_ts - RESET_MATCH_MS, side="right")
        hi = np.searchsorted(reported_resets_ms, ts + RESET_MATCH_MS, side="right")
        resets |= drops & (hi > lo)
    glitches = drops & ~resets
    deltas = np.where(resets, values, np.where(glitches, 0.0, values - before))
    return CounterSteps(deltas, resets, glitches, previous_ts)


def aggregate(
    points: Points,
    edges: Int64Array,
    *,
    counter: bool,
    previous: Points | None = None,
    plausibility: Plausibility = NO_LIMITS,
    reported_resets_ms: Int64Array | None = None,
) -> Columns:
    """Rollup columns of the non-empty intervals between `edges`, from ascending unique readings.

    `previous` is the channel's last reading before `points` (counters need it for the first delta).
    A counter's energy across a gap (readings more than GAP_MS apart) is spread over the gap's
    time, interval by interval, and those intervals are flagged ESTIMATED; an interval that gets
    only such a share has count 0. The share of intervals outside `edges` is left to them.
    """
    ts, values = points.timestamps_ms, points.values
    k = len(edges) - 1
    if k <= 0 or (len(ts) == 0):
        return _empty_columns()
    count = np.zeros(k, dtype=np.int64)
    total = np.zeros(k, dtype=np.float64)
    low = np.zeros(k, dtype=np.float64)
    high = np.zeros(k, dtype=np.float64)
    first = np.zeros(k, dtype=np.float64)
    last = np.zeros(k, dtype=np.float64)
    first_ms = edges[:-1].copy()
    last_ms = edges[1:] - 1
    delta = np.zeros(k, dtype=np.float64)
    resets_n = np.zeros(k, dtype=np.int64)
    gaps_n = np.zeros(k, dtype=np.int64)
    flags = np.zeros(k, dtype=np.int64)
    present = np.zeros(k, dtype=bool)

    inside = (ts >= edges[0]) & (ts < edges[-1])
    index_all = np.searchsorted(edges, ts, side="right") - 1
    keep = inside.copy()
    if not counter:
        odd = plausibility.implausible(ts, values) & inside
        if odd.any():
            np.bitwise_or.at(flags, index_all[odd], int(Flag.IMPLAUSIBLE))
            present[index_all[odd]] = True
            keep &= ~odd
    kts, kvalues, kindex = ts[keep], values[keep], index_all[keep]
    if len(kts):
        starts = np.flatnonzero(np.diff(kindex, prepend=-1))
        ends = np.concatenate((starts[1:], [len(kts)])) - 1
        bucket = kindex[starts]
        present[bucket] = True
        count[bucket] = np.diff(np.concatenate((starts, [len(kts)])))
        total[bucket] = np.add.reduceat(kvalues, starts)
        low[bucket] = np.minimum.reduceat(kvalues, starts)
        high[bucket] = np.maximum.reduceat(kvalues, starts)
        first_ms[bucket] = kts[starts]
        first[bucket] = kvalues[starts]
        last_ms[bucket] = kts[ends]
        last[bucket] = kvalues[ends]
    if counter:
        steps = counter_steps(points, previous=previous, reported_resets_ms=reported_resets_ms)
        gap = (ts - steps.previous_ts) > GAP_MS
        plain = inside & ~gap
        np.add.at(delta, index_all[plain], steps.deltas[plain])
        np.add.at(resets_n, index_all[inside], steps.resets[inside].astype(np.int64))
        np.add.at(gaps_n, index_all[inside], gap[inside].astype(np.int64))
        np.bitwise_or.at(flags, index_all[inside & steps.resets], int(Flag.RESET))
        np.bitwise_or.at(flags, index_all[inside & gap], int(Flag.GAP))
        np.bitwise_or.at(flags, index_all[inside & steps.glitches], int(Flag.GLITCH))
        for i in np.flatnonzero(gap).tolist():
            _spread(
                delta=delta,
                flags=flags,
                present=present,
                first=first,
                last=last,
                count=count,
                edges=edges,
                a=int(steps.previous_ts[i]),
                b=int(ts[i]),
                energy=float(steps.deltas[i]),
                value_b=float(values[i]),
            )
    rows = np.flatnonzero(present)
    return {
        "start_ms": edges[rows],
        "end_ms": edges[rows + 1],
        "count": count[rows],
        "sum": total[rows],
        "min": low[rows],
        "max": high[rows],
        "first_ms": first_ms[rows],
        "first": first[rows],
        "last_ms": last_ms[rows],
        "last": last[rows],
        "delta": delta[rows],
        "resets": resets_n[rows],
        "gaps": gaps_n[rows],
        "flags": flags[rows],
    }


def _spread(
    *,
    delta: npt.NDArray[np.float64],
    flags: npt.NDArray[np.int64],
    present: npt.NDArray[np.bool_],
    first: npt.NDArray[np.float64],
    last: npt.NDArray[np.float64],
    count: npt.NDArray[np.int64],
    edges: Int64Array,
    a: int,
    b: int,
    energy: float,
    value_b: float,
) -> None:
    """Share a gap's energy, measured from `a` to `b`, among the intervals by their overlap with [a, b)."""
    lo = max(int(np.searchsorted(edges, a, side="right")) - 1, 0)
    hi = min(int(np.searchsorted(edges, b, side="right")) - 1, len(edges) - 2)
    if hi < lo:
        return
    cells = np.arange(lo, hi + 1)
    overlap = np.minimum(edges[cells + 1], b) - np.maximum(edges[cells], a)
    overlap = np.clip(overlap, 0, None)
    cells, overlap = cells[overlap > 0], overlap[overlap > 0]
    if len(cells) == 0:
        return
    delta[cells] += energy * overlap / (b - a)
    flags[cells] |= int(Flag.ESTIMATED)
    present[cells] = True
    # Intervals with no reading of their own show the counter as estimated along the gap.
    empty = cells[count[cells] == 0]
    if len(empty):
        at_start = np.maximum(edges[empty], a)
        at_end = np.minimum(edges[empty + 1], b)
        base = value_b - energy
        first[empty] = base + energy * (at_start - a) / (b - a)
        last[empty] = base + energy * (at_end - a) / (b - a)


def combine(finer: Columns, edges: Int64Array) -> Columns:
    """Coarser rollup columns from ascending finer intervals that each lie inside one coarse interval.

    Intervals with count 0 (estimated or all readings implausible) add their energy and flags but
    take no part in min, max, first and last, unless a coarse interval has nothing else.
    """
    starts_ms = finer["start_ms"]
    inside = (starts_ms >= edges[0]) & (starts_ms < edges[-1])
    rows = {name: column[inside] for name, column in finer.items()}
    if len(rows["start_ms"]) == 0:
        return _empty_columns()
    index = np.searchsorted(edges, rows["start_ms"], side="right") - 1
    starts = np.flatnonzero(np.diff(index, prepend=-1))
    bucket = index[starts]
    result: Columns = {
        "start_ms": edges[bucket],
        "end_ms": edges[bucket + 1],
        "count": np.add.reduceat(rows["count"], starts),
        "sum": np.add.reduceat(rows["sum"], starts),
        "delta": np.add.reduceat(rows["delta"], starts),
        "resets": np.add.reduceat(rows["resets"], starts),
        "gaps": np.add.reduceat(rows["gaps"], starts),
        "flags": np.bitwise_or.reduceat(rows["flags"], starts),
    }
    counted = rows["count"] > 0
    # Groups with no counted row take their values from all rows; the others from counted rows only.
    has_counted = np.add.reduceat(counted.astype(np.int64), starts) > 0
    use = counted | ~has_counted[np.searchsorted(bucket, index)]
    sub_index = index[use]
    sub_starts = np.flatnonzero(np.diff(sub_index, prepend=-1))
    sub_ends = np.concatenate((sub_starts[1:], [len(sub_index)])) - 1
    for name, reduce in (("min", np.minimum.reduceat), ("max", np.maximum.reduceat)):
        result[name] = reduce(rows[name][use], sub_starts)
    for name in ("first_ms", "first"):
        result[name] = rows[name][use][sub_starts]
    for name in ("last_ms", "last"):
        result[name] = rows[name][use][sub_ends]
    return result
