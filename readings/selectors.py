"""Reads from the readings store. Every selector takes an `Access`: another tenant's channels are unreachable.

    readings_series(access=..., channel_ids=[41], start=..., end=..., resolution="15m")
        -> {41: Series(timestamps_ms=[...], values={"avg": [...], "min": [...], "max": [...]}, ...)}
    readings_latest(access=..., channel_ids=[41, 42]) -> {41: Latest(ts_ms=..., value=...), ...}

The websocket snapshot of the last 15 minutes is `readings_series(..., resolution="raw")` over
[now - 15 min, now); the REST API serves series, latest values and CSV from the same two calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from accounts.access import Access
from devices.models import Channel, Facility
from devices.quantities import Quantity, is_counter
from readings.demand import INTERVAL_MS, NO_METERING, Metering, facilities_metering, facility_quarters, metering_of
from readings.errors import ReadingsQueryError
from readings.models import Resolution as ResolutionLevel
from readings.store import get_store
from readings.totals import UNIT_TO_KILO, ChannelInfo, counted_channels

Resolution = Literal["raw", "15m", "1h", "1d", "1mo"]
Aggregate = Literal["avg", "min", "max", "sum", "count", "delta", "first", "last"]
RESOLUTIONS: tuple[str, ...] = get_args(Resolution)
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
_LEVELS = {"15m": ResolutionLevel.M15, "1h": ResolutionLevel.H1, "1d": ResolutionLevel.D1, "1mo": ResolutionLevel.MO1}

# The longest interval of each resolution (a DST day, a 31-day month), to find those overlapping `start`.
_LONGEST_MS = {"15m": 900_000, "1h": 3_600_000, "1d": 25 * 3_600_000, "1mo": 31 * 86_400_000 + 3_600_000}
MAX_CHANNELS = 100
# Raw answers are NumPy arrays of every reading: a month of one 2-second channel is 1.3 million points.
MAX_RAW_SPAN = timedelta(days=31)
GAUGE_DEFAULT: tuple[Aggregate, ...] = ("avg", "min", "max")
COUNTER_DEFAULT: tuple[Aggregate, ...] = ("delta",)
_LEVEL_AGGREGATES = frozenset({"min", "max", "first", "last"})


@dataclass(frozen=True, slots=True)
class Series:
    """One channel's answer.

    Raw: `timestamps_ms` are reading times and `values` has the single key "value".
    Rollups: `timestamps_ms` / `ends_ms` bound each calendar interval [start, end) in the facility's
    time zone (a day is 23, 24 or 25 hours), and `values` has one array per aggregate asked for.
    Intervals without readings are absent; `delta` is the consumption of an energy counter.
    """

    channel_id: int
    resolution: Resolution
    source: str  # "raw" or "rollup:<resolution>": where the answer came from
    timestamps_ms: npt.NDArray[np.int64]
    values: dict[str, npt.NDArray[np.float64]]
    ends_ms: npt.NDArray[np.int64] | None = None
    # Rollups: "flags" per interval (a bit mask of readings.rollups.Flag); counters also "resets" and "gaps".
    extras: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Latest:
    channel_id: int
    ts_ms: int
    value: float


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ReadingsQueryError("start and end must be time-zone aware")
    return int(moment.timestamp() * 1000)


def visible_channels(*, access: Access, channel_ids: Sequence[int]) -> dict[int, Channel]:
    """The channels of `channel_ids` the access may read; an unknown and a foreign id fail alike."""
    wanted = list(dict.fromkeys(int(c) for c in channel_ids))
    if not wanted:
        raise ReadingsQueryError("name at least one channel")
    if len(wanted) > MAX_CHANNELS:
        raise ReadingsQueryError(f"at most {MAX_CHANNELS} channels per query")
    channels = Channel.objects.filter(tenant_id=access.tenant_id, id__in=wanted).select_related("device")
    if access.facility_ids is not None:
        channels = channels.filter(device__facility_id__in=access.facility_ids)
    found = {channel.pk: channel for channel in channels}
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ReadingsQueryError(f"unknown channel(s): {', '.join(map(str, missing))}")
    return found


def readings_series(
    *,
    access: Access,
    channel_ids: Sequence[int],
    start: datetime,
    end: datetime,
    resolution: Resolution = "raw",
    aggregates: Sequence[Aggregate] | None = None,
) -> dict[int, Series]:
    """Readings or rollups of channels over [start, end), from the cheapest source that answers.

    Rollup intervals that overlap [start, end) are returned whole: asking for March 20 to April 2
    at "1mo" gives the whole of March and of April as far as they have data.

    Rollup intervals that overlap [start, end) are returned whole: asking for March 20 to April 2
    at "1mo" gives the whole of March and of April as far as they have data.

    Raw comes from the buckets (at most 31 days per query); every other resolution comes from its
    own rollup table (a month at 15 minutes is 2,976 rows, a year of days 365), never from a scan
    of the raw data. Rollups trail the raw data by the refresh period (10 s by default).
    Aggregates default to avg/min/max for gauges and delta (consumption) for counters.
    """
    if resolution not in RESOLUTIONS:
        raise ReadingsQueryError(f"unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}")
    start_ms, end_ms = _ms(start), _ms(end)
    if end_ms <= start_ms:
        raise ReadingsQueryError("end must be after start")
    if aggregates is not None:
        unknown = [a for a in aggregates if a not in AGGREGATES]
        if unknown or not aggregates:
            raise ReadingsQueryError(f"unknown aggregate(s) {unknown}; use some of {', '.join(AGGREGATES)}")
    channels = visible_channels(access=access, channel_ids=channel_ids)
    store = get_store()
    if resolution == "raw":
        if aggregates:
            raise ReadingsQueryError("raw readings have no aggregates; ask for a resolution such as 15m")
        if end - start > MAX_RAW_SPAN:
            raise ReadingsQueryError("raw readings are served for at most 31 days per query; use a rollup")
        points = store.read(tenant_id=access.tenant_id, channel_ids=list(channels), start_ms=start_ms, end_ms=end_ms)
        empty_ts, empty_values = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return {
            channel_id: Series(
                channel_id=channel_id,
                resolution="raw",
                source="raw",
                timestamps_ms=points[channel_id].timestamps_ms if channel_id in points else empty_ts,
                values={"value": points[channel_id].values if channel_id in points else empty_values},
            )
            for channel_id in channels
        }
    wanted: dict[int, tuple[str, ...]] = {
        channel_id: tuple(aggregates)
        if aggregates
        else (COUNTER_DEFAULT if is_counter(channel.quantity) else GAUGE_DEFAULT)
        for channel_id, channel in channels.items()
    }
    counters = {channel_id for channel_id, channel in channels.items() if is_counter(channel.quantity)}
    fields = {"end_ms", "count", "flags"}
    for names in wanted.values():
        for name in names:
            fields.update(("sum", "count") if name == "avg" else (name,))
    if counters:
        fields.update(("resets", "gaps"))
    rows = store.read_rollups(
        tenant_id=access.tenant_id,
        channel_ids=list(channels),
        resolution=int(_LEVELS[resolution]),
        start_ms=start_ms - _LONGEST_MS[resolution] + 1,
        end_ms=end_ms,
        fields=sorted(fields),
    )
    empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    result: dict[int, Series] = {}
    for channel_id in channels:
        block = rows.get(channel_id)
        columns: dict[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]] = {}
        if block is not None:
            overlapping = block.columns["end_ms"] > start_ms
            columns = {name: column[overlapping] for name, column in block.columns.items()}
        values: dict[str, npt.NDArray[np.float64]] = {}
        # An interval with count 0 holds only estimated energy or only implausible readings: no level.
        no_reading = columns["count"] == 0 if columns else np.empty(0, dtype=bool)
        for name in wanted[channel_id]:
            if not columns:
                values[name] = empty_f
            elif name == "avg":
                values[name] = np.divide(
                    columns["sum"], columns["count"], out=np.full(len(no_reading), np.nan), where=~no_reading
                )
            else:
                values[name] = columns[name].astype(np.float64)
                if name in _LEVEL_AGGREGATES:
                    values[name][no_reading] = np.nan
        extras: dict[str, npt.NDArray[np.int64]] = {"flags": columns["flags"].astype(np.int64) if columns else empty_i}
        if channel_id in counters:
            extras |= {name: columns[name].astype(np.int64) if columns else empty_i for name in ("resets", "gaps")}
        result[channel_id] = Series(
            channel_id=channel_id,
            resolution=resolution,
            source=f"rollup:{resolution}",
            timestamps_ms=columns["start_ms"].astype(np.int64) if columns else empty_i,
            ends_ms=columns["end_ms"].astype(np.int64) if columns else empty_i,
            values=values,
            extras=extras,
        )
    return result


def readings_latest(*, access: Access, channel_ids: Sequence[int]) -> dict[int, Latest]:
    """The most recent reading of each channel; channels that never reported are absent."""
    channels = visible_channels(access=access, channel_ids=channel_ids)
    latest = get_store().latest(tenant_id=access.tenant_id, channel_ids=list(channels))
    return {
        channel_id: Latest(channel_id=channel_id, ts_ms=int(p.timestamps_ms[-1]), value=float(p.values[-1]))
        for channel_id, p in latest.items()
    }


# --- Demand: what bills and peaks stand on ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemandSeries:
    """15-minute energy and demand, in the facility's time zone, with each interval's flags (`readings.demand`).

    Per device and load, the energy counters answer each interval where they have data, else the mean
    power (`source` is "counter", "power", "mixed" or "none"). From counters, `energy_kwh` is the
    interval's delta; from power, the mean active power × the time the interval's readings cover (a
    quarter cut by a gap or still running counts only its covered part). `demand_kw` is `energy_kwh` × 4,
    as a utility meter measures it (for the running quarter: its energy so far × 4). Readings outside
    a channel's plausible range are left out unless confirmed.
    `flags` is a bit mask of `readings.rollups.Flag` (use `flag_names`); intervals without data are absent.
    """

    facility_id: int
    timezone: str
    source: Literal["counter", "power", "mixed", "none"]
    timestamps_ms: npt.NDArray[np.int64]
    ends_ms: npt.NDArray[np.int64]
    energy_kwh: npt.NDArray[np.float64]
    demand_kw: npt.NDArray[np.float64]
    flags: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class DemandPeak:
    """The highest 15-minute demand of a period, the interval that set it, and that interval's flags."""

    kw: float
    start_ms: int
    end_ms: int
    flags: int


def _demand_series(
    *, access: Access, metering: Metering, facility_id: int, timezone: str, start: datetime, end: datetime
) -> DemandSeries:
    start_ms, end_ms = _ms(start), _ms(end)
    if end_ms <= start_ms:
        raise ReadingsQueryError("end must be after start")
    quarters = facility_quarters(access=access, timezone=timezone, start_ms=start_ms, end_ms=end_ms, metering=metering)
    present = np.isfinite(quarters.kwh)
    if not present.any():
        empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return DemandSeries(facility_id, timezone, "none", empty_i, empty_i, empty_f, empty_f, empty_i)
    starts = quarters.starts_ms[present].astype(np.int64)
    energy = quarters.kwh[present]
    source = next(iter(quarters.sources)) if len(quarters.sources) == 1 else "mixed"
    return DemandSeries(
        facility_id=facility_id,
        timezone=timezone,
        source=source,  # type: ignore[arg-type]
        timestamps_ms=starts,
        ends_ms=starts + INTERVAL_MS,
        energy_kwh=energy,
        demand_kw=energy * 4,
        flags=quarters.flags[present] if quarters.flags is not None else np.zeros(len(starts), dtype=np.int64),
    )


def _facility_channels(*, access: Access, facility_id: int) -> tuple[Facility, list[Channel]]:
    """The facility (another tenant's or a non-granted one fails like a missing one) and its channels."""
    facility = _facility(access=access, facility_id=facility_id)
    channels = list(
        Channel.objects.filter(tenant_id=access.tenant_id, device__facility_id=facility_id).select_related("load")
    )
    return facility, channels


def _facility(*, access: Access, facility_id: int) -> Facility:
    facilities = Facility.objects.filter(tenant_id=access.tenant_id, pk=facility_id)
    if access.facility_ids is not None:
        facilities = facilities.filter(pk__in=access.facility_ids)
    facility = facilities.first()
    if facility is None:
        raise ReadingsQueryError(f"unknown facility: {facility_id}")
    return facility


def readings_facility_demand(*, access: Access, facility_id: int, start: datetime, end: datetime) -> DemandSeries:
    """The facility's 15-minute energy and demand over the intervals overlapping [start, end).

    The rule of `readings.demand`, the bills' own: per device and load its energy counters answer each
    interval where they have data, else its mean active power; the main meter is the mains load, else
    every load. Another tenant's or a non-granted facility fails like a missing one, with
    `ReadingsQueryError`.
    """
    facility = _facility(access=access, facility_id=facility_id)
    return _demand_series(
        access=access,
        metering=facilities_metering(facility_ids=[facility.pk]).get(facility.pk, NO_METERING),
        facility_id=facility.pk,
        timezone=facility.timezone,
        start=start,
        end=end,
    )


def readings_channel_demand(*, access: Access, channel_id: int, start: datetime, end: datetime) -> DemandSeries:
    """One energy-counter or active-power channel's 15-minute energy and demand (for cost allocation)."""
    channel = visible_channels(access=access, channel_ids=[channel_id])[int(channel_id)]
    facility = channel.device.facility
    return _demand_series(
        access=access,
        metering=metering_of([channel]),
        facility_id=facility.pk,
        timezone=facility.timezone,
        start=start,
        end=end,
    )


def readings_demand_peak(
    series: DemandSeries, *, start_ms: int | None = None, end_ms: int | None = None
) -> DemandPeak | None:
    """The highest demand interval of `series` starting in [start_ms, end_ms); ties go to the earliest."""
    keep = np.ones(len(series.timestamps_ms), dtype=bool)
    if start_ms is not None:
        keep &= series.timestamps_ms >= start_ms
    if end_ms is not None:
        keep &= series.timestamps_ms < end_ms
    if not keep.any():
        return None
    index = np.flatnonzero(keep)[int(np.argmax(series.demand_kw[keep]))]
    return DemandPeak(
        kw=float(series.demand_kw[index]),
        start_ms=int(series.timestamps_ms[index]),
        end_ms=int(series.ends_ms[index]),
        flags=int(series.flags[index]),
    )


# --- A facility's energy per interval: its total and each load -----------------------------------


@dataclass(frozen=True, slots=True)
class FacilityEnergy:
    """A facility's kWh per calendar interval [start, end) of a rollup resolution, in its time zone.

    `total_kwh` is the facility total of `readings.totals.counted_channels` (its mains load when it has
    one, else the sum of its loads), and `loads` each other load's kWh. NaN where nothing was measured.
    `source` is "counter" (energy counters' deltas), "power" (mean power × interval) or "none".
    """

    facility_id: int
    timezone: str
    resolution: Resolution
    source: Literal["counter", "power", "none"]
    timestamps_ms: npt.NDArray[np.int64]
    ends_ms: npt.NDArray[np.int64]
    total_kwh: npt.NDArray[np.float64]
    loads: dict[int, npt.NDArray[np.float64]]


def _kwh_by_channel(series: Series, *, source: str, factor: float) -> npt.NDArray[np.float64]:
    if source == "counter":
        return series.values["delta"] * factor
    assert series.ends_ms is not None
    hours = (series.ends_ms - series.timestamps_ms).astype(np.float64) / 3_600_000
    return series.values["avg"] * factor * hours


def readings_facility_energy(
    *, access: Access, facility_id: int, start: datetime, end: datetime, resolution: Resolution = "1h"
) -> FacilityEnergy:
    """A facility's total and per-load kWh over the rollup intervals overlapping [start, end).

    Energy counters answer where the facility has them, else the mean active power. Another tenant's
    or a non-granted facility fails like a missing one, with `ReadingsQueryError`.
    """
    if resolution == "raw" or resolution not in RESOLUTIONS:
        raise ReadingsQueryError("a facility's energy comes from the rollups: use 15m, 1h, 1d or 1mo")
    facility, channels = _facility_channels(access=access, facility_id=facility_id)
    infos = [
        ChannelInfo(id=c.pk, device_id=c.device_id, load_id=c.load_id, quantity=c.quantity, unit=c.unit, phase=c.phase)
        for c in channels
    ]
    mains = [c.load.pk for c in channels if c.load is not None and c.load.kind == "mains"]
    empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    for quantity, source, aggregate in (
        (Quantity.ACTIVE_ENERGY, "counter", "delta"),
        (Quantity.ACTIVE_POWER, "power", "avg"),
    ):
        counted, mains_ids = counted_channels(infos, quantity=quantity, mains_load_ids=mains)
        if not counted:
            continue
        answer = readings_series(
            access=access,
            channel_ids=list(counted),
            start=start,
            end=end,
            resolution=resolution,
            aggregates=[aggregate],  # type: ignore[list-item]
        )
        starts = sorted({int(t) for s in answer.values() for t in s.timestamps_ms.tolist()})
        ends: dict[int, int] = {}
        index = {at: i for i, at in enumerate(starts)}
        total = np.full(len(starts), np.nan)
        loads: dict[int, npt.NDArray[np.float64]] = {}
        for channel_id, series in answer.items():
            info = counted[channel_id]
            kwh = _kwh_by_channel(series, source=source, factor=UNIT_TO_KILO[info.unit])
            assert series.ends_ms is not None
            slots = np.array([index[int(t)] for t in series.timestamps_ms.tolist()], dtype=np.int64)
            ends.update(zip(series.timestamps_ms.tolist(), series.ends_ms.tolist(), strict=True))
            measured = ~np.isnan(kwh)
            if info.load_id is not None and info.load_id not in mains_ids:
                column = loads.setdefault(info.load_id, np.full(len(starts), np.nan))
                column[slots[measured]] = np.nan_to_num(column[slots[measured]]) + kwh[measured]
            if not mains_ids or info.load_id in mains_ids:
                total[slots[measured]] = np.nan_to_num(total[slots[measured]]) + kwh[measured]
        return FacilityEnergy(
            facility_id=facility_id,
            timezone=facility.timezone,
            resolution=resolution,
            source=source,  # type: ignore[arg-type]
            timestamps_ms=np.array(starts, dtype=np.int64),
            ends_ms=np.array([ends[s] for s in starts], dtype=np.int64),
            total_kwh=total,
            loads=loads,
        )
    return FacilityEnergy(facility_id, facility.timezone, resolution, "none", empty_i, empty_i, empty_f, {})
