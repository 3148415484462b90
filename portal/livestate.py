"""What a live dashboard derives from the stream of readings. Pure Python, no Django, no I/O.

- `Coalescer`: at most one message per device every 2 seconds, whatever the device sends.
- `FacilityPower`: which active-power channels add up to each load's kW and to the facility's kW.
- `DemandTracker`: energy in the current 15-minute demand interval, and where it is heading.

The consumers keep one of each per subscription and feed them the channel-layer messages of
`readings.live`; the same rules serve the facility dashboard and the park overview.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# The counting rule is the store's too (readings.totals); re-exported for the portal's modules.
from readings.totals import UNIT_TO_KILO, ChannelInfo, counted_channels

INTERVAL_MS = 900_000  # the 15-minute demand interval billing is based on


# --- Coalescing --------------------------------------------------------------------------


@dataclass(slots=True)
class PendingReadings:
    """Samples of one device waiting to be sent, merged from one or more channel-layer messages."""

    ts: list[int] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)

    def merge(self, ts: list[int], values: dict[str, list[float | None]], *, max_samples: int) -> None:
        known = set(self.values) | set(values)
        before = len(self.ts)
        for key in known:
            # A channel missing from one batch gets gaps, so every series stays as long as `ts`.
            series = self.values.setdefault(key, [None] * before)
            series.extend(values.get(key) or [None] * len(ts))
        self.ts.extend(ts)
        overflow = len(self.ts) - max_samples
        if overflow > 0:
            # A device flooding the socket loses its oldest frames, not the client its connection.
            del self.ts[:overflow]
            for series in self.values.values():
                del series[:overflow]

    @property
    def newest_ts(self) -> int | None:
        return self.ts[-1] if self.ts else None


class Coalescer:
    """One message per device per `interval_s` of its samples: what arrives sooner is merged.

    A batch that starts a new `interval_s` step of the device's *sample* time (a device on its
    2-second schedule) goes out at once, provided `JITTER_SHARE` of an interval of wall time has
    passed since the device's last message; if not, it waits only for that. Anything else (a
    device sending faster, a backlog resent after a reconnect) is merged into one message per
    interval, sent when the interval is up (`due`). So a client never gets two messages of a
    device within `JITTER_SHARE` of an interval, and on average no more than one per interval.
    """

    # Holding a frame that arrived early by jitter would not just delay it: a throttle whose rate
    # equals the source's lets those delays add up (a queue at 100 % load). Measured under load
    # (bench/live_latency.py), a frame on schedule held for the full interval behind a late one
    # kept every later frame of that device about 1.9 s late, for good. Frames on schedule
    # therefore wait at most until 1/4 of an interval after the last message, which also lets a
    # late device catch up.
    JITTER_SHARE = 0.25

    def __init__(self, *, interval_s: float = 2.0, max_samples: int = 60) -> None:
        self.interval_s = interval_s
        self.max_samples = max_samples
        self._last_sent_at: dict[int, float] = {}
        self._last_sent_ts: dict[int, int] = {}
        self._pending: dict[int, PendingReadings] = {}
        self._due_at: dict[int, float] = {}

    def offer(
        self, *, device_id: int, ts: list[int], values: dict[str, list[float | None]], now: float
    ) -> PendingReadings | None:
        """The message to send now, or None when it is held until `next_due`."""
        pending = self._pending.setdefault(device_id, PendingReadings())
        pending.merge(ts, values, max_samples=self.max_samples)
        if not pending.ts:
            del self._pending[device_id]
            return None
        last_at = self._last_sent_at.get(device_id)
        if last_at is None or now - last_at >= self.interval_s:
            return self._release(device_id, now)
        last_ts = self._last_sent_ts.get(device_id)
        new_step = bool(last_ts is not None and ts and ts[0] - last_ts >= self.interval_s * 1000)
        earliest = last_at + self.interval_s * (self.JITTER_SHARE if new_step else 1.0)
        if now >= earliest:
            return self._release(device_id, now)
        self._due_at[device_id] = min(self._due_at.get(device_id, earliest), earliest)
        return None

    def next_due(self) -> float | None:
        """The monotonic time at which the earliest held message may go out."""
        return min(self._due_at.values()) if self._due_at else None

    def due(self, *, now: float) -> list[tuple[int, PendingReadings]]:
        ready = [d for d, at in self._due_at.items() if now >= at]
        return [(d, self._release(d, now)) for d in ready]

    def _release(self, device_id: int, now: float) -> PendingReadings:
        pending = self._pending.pop(device_id)
        self._due_at.pop(device_id, None)
        self._last_sent_at[device_id] = now
        if pending.newest_ts is not None:
            self._last_sent_ts[device_id] = pending.newest_ts
        return pending


# --- Power ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PowerSnapshot:
    total_kw: float | None
    loads_kw: dict[int | None, float]  # None: channels not allocated to a load

    def as_json(self) -> dict[str, object]:
        return {
            "total_kw": _round(self.total_kw),
            "loads": {("none" if k is None else str(k)): _round(v) for k, v in self.loads_kw.items()},
        }


class FacilityPower:
    """The facility's current kW, from the latest value of each active-power channel (`counted_channels`)."""

    def __init__(self, *, channels: Iterable[ChannelInfo], mains_load_ids: Iterable[int] = ()) -> None:
        self._counted, self._mains = counted_channels(channels, quantity="active_power", mains_load_ids=mains_load_ids)
        self._latest_kw: dict[int, float] = {}

    @property
    def channel_ids(self) -> frozenset[int]:
        return frozenset(self._counted)

    def update(self, values: dict[str, list[float | None]]) -> bool:
        """Take the newest non-empty value of each counted channel; True when one changed.

        A value outside the channel's plausible range is left out, as the rollups, peaks and bills
        leave it out (one 500 kW glitch on a 6 kW shop must not flash on the dashboard or the projection).
        """
        changed = False
        for key, series in values.items():
            channel = self._counted.get(int(key))
            if channel is None:
                continue
            latest = next(
                (v for v in reversed(series) if v is not None and math.isfinite(v) and channel.plausible(v)), None
            )
            if latest is not None:
                self._latest_kw[channel.id] = latest * UNIT_TO_KILO[channel.unit]
                changed = True
        return changed

    def snapshot(self) -> PowerSnapshot:
        loads: dict[int | None, float] = {}
        for channel_id, kw in self._latest_kw.items():
            load_id = self._counted[channel_id].load_id
            loads[load_id] = loads.get(load_id, 0.0) + kw
        if not loads:
            return PowerSnapshot(total_kw=None, loads_kw={})
        if self._mains:
            mains = [loads[m] for m in self._mains if m in loads]
            total = sum(mains) if mains else None
        else:
            total = sum(loads.values())
        return PowerSnapshot(total_kw=total, loads_kw=loads)


# --- Demand ----------------------------------------------------------------------------------


def interval_start_ms(ts_ms: int, tz: ZoneInfo) -> int:
    """Start of the 15-minute interval holding `ts_ms`, aligned in the facility's local time."""
    offset = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz).utcoffset()
    offset_ms = int(offset.total_seconds() * 1000) if offset is not None else 0
    return (ts_ms + offset_ms) // INTERVAL_MS * INTERVAL_MS - offset_ms


@dataclass(frozen=True, slots=True)
class Demand:
    interval_start_ms: int
    energy_kwh: float  # measured so far in this interval
    projection_kw: float | None  # the interval's average kW if the current load holds until its end

    def as_json(self) -> dict[str, object]:
        return {
            "interval_start": self.interval_start_ms,
            "energy_kwh": round(self.energy_kwh, 4),
            "projection_kw": _round(self.projection_kw),
        }


class DemandTracker:
    """Integrates the facility's total kW over time, per calendar-aligned 15-minute interval.

    Billing takes the highest 15-minute average power of the month as the demand peak; the
    projection tells the manager, minutes before the interval ends, that it is about to set one.
    """

    # A silence longer than this is a gap (devices offline), not a constant load.
    MAX_STEP_MS = 60_000

    def __init__(self, *, tz: ZoneInfo, count_from_ms: int | None = None) -> None:
        self.tz = tz
        self._interval_start: int | None = None
        self._energy_kwh = 0.0
        self._last_ts: int | None = None
        self._last_kw: float | None = None
        self._observed_from = 0
        # Integrated across intervals, from `count_from_ms` on (the moment the store's figure stops).
        self.count_from_ms = count_from_ms
        self.energy_total_kwh = 0.0
        # Intervals that ended while observed: (start, average kW), for the live month peak.
        self.completed: list[tuple[int, float]] = []

    def add(self, *, ts_ms: int, total_kw: float | None) -> None:
        if self._last_ts is not None and ts_ms <= self._last_ts:
            # Devices report on their own clocks; a late sample updates the level, not the time.
            if total_kw is not None:
                self._last_kw = total_kw
            return
        start = interval_start_ms(ts_ms, self.tz)
        if start != self._interval_start:
            self._complete(next_start=start)
            self._interval_start = start
            self._energy_kwh = 0.0
            # Without history the interval is known from the first sample on, not from its start.
            self._observed_from = start if self._last_ts is not None and self._last_ts < start else ts_ms
        last_ts, last_kw = self._last_ts, self._last_kw
        if last_ts is not None and last_kw is not None and ts_ms - last_ts <= self.MAX_STEP_MS:
            self._energy_kwh += last_kw * (ts_ms - max(last_ts, start)) / 3_600_000
            counted_from = last_ts if self.count_from_ms is None else max(last_ts, self.count_from_ms)
            self.energy_total_kwh += last_kw * max(0, ts_ms - counted_from) / 3_600_000
        self._last_ts = ts_ms
        self._last_kw = total_kw

    def _complete(self, *, next_start: int) -> None:
        """Record the interval that just ended, when it was watched from its start to its end."""
        start = self._interval_start
        if start is None or self._last_ts is None or self._last_kw is None:
            return
        end = start + INTERVAL_MS
        if next_start < end or self._observed_from != start:
            return
        # The last level holds to the end of the interval, unless the silence was a gap.
        tail = end - self._last_ts if end - self._last_ts <= self.MAX_STEP_MS else 0
        energy_kwh = self._energy_kwh + self._last_kw * tail / 3_600_000
        self.completed.append((start, energy_kwh * 3_600_000 / INTERVAL_MS))

    def demand(self, *, now_ms: int) -> Demand | None:
        if self._last_ts is None:
            return None
        start = interval_start_ms(now_ms, self.tz)
        if start != self._interval_start:
            return Demand(interval_start_ms=start, energy_kwh=0.0, projection_kw=self._last_kw)
        end = start + INTERVAL_MS
        projection = None
        if self._last_kw is not None:
            # The load holds from the last sample to the end of the interval; the average is taken
            # over the part of the interval that is known (all of it, given the store's history).
            energy_kwh = self._energy_kwh + self._last_kw * max(0, end - self._last_ts) / 3_600_000
            projection = energy_kwh * 3_600_000 / max(1, end - self._observed_from)
        return Demand(interval_start_ms=start, energy_kwh=self._energy_kwh, projection_kw=projection)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
