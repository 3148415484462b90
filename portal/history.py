"""The live pages' window on the readings store: the one place the portal reads history.

- the last 15 minutes of raw readings, for the charts' snapshot;
- today's kWh, in the facility's time zone, from `readings_facility_demand`: the energy counters'
  15-minute deltas, or without counters the mean power of completed quarters over the time their
  readings cover;
- the month's demand peak so far: the highest completed 15-minute demand, billing's stored one.

"Total" follows `readings.totals.counted_channels`, so these figures and the live ones agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from accounts.access import Access
from billing.selectors import month_peak_stored
from devices.models import Facility, Load
from devices.selectors import channel_list, load_list
from readings.rollups import containing_interval
from readings.selectors import MAX_CHANNELS, readings_facility_demand, readings_series
from readings.totals import UNIT_TO_KILO, ChannelInfo, counted_channels


@dataclass(frozen=True, slots=True)
class Peak:
    kw: float
    interval_start_ms: int


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def channel_series(
    *, access: Access, channel_ids: Sequence[int], start_ms: int, end_ms: int
) -> dict[int, tuple[list[int], list[float]]]:
    """Raw readings of the channels over [start_ms, end_ms), as JSON-ready lists."""
    result: dict[int, tuple[list[int], list[float]]] = {}
    ids = list(channel_ids)
    for first in range(0, len(ids), MAX_CHANNELS):
        answer = readings_series(
            access=access, channel_ids=ids[first : first + MAX_CHANNELS], start=_dt(start_ms), end=_dt(end_ms)
        )
        for channel_id, series in answer.items():
            if len(series.timestamps_ms):
                result[channel_id] = (series.timestamps_ms.tolist(), series.values["value"].tolist())
    return result


@dataclass(frozen=True, slots=True)
class EnergyToday:
    """Today's kWh from the store, and the moment up to which it counts (the live integration takes over there)."""

    kwh: float | None
    until_ms: int


def energy_today(*, access: Access, facility: Facility, now_ms: int, running_quarter: bool = True) -> EnergyToday:
    """From the energy counters' 15-minute deltas up to now; without counters, from the mean power of
    today's quarters, each over the time its readings cover. `running_quarter=False` leaves the
    running quarter out (power only), for a live dashboard that replays its raw readings."""
    tz = ZoneInfo(facility.timezone)
    day_start, _ = containing_interval("1d", tz, now_ms)
    current_start, _ = containing_interval("15m", tz, now_ms)
    series = readings_facility_demand(access=access, facility_id=facility.pk, start=_dt(day_start), end=_dt(now_ms))
    if series.source == "none":
        return EnergyToday(kwh=None, until_ms=now_ms)
    until_ms = now_ms if running_quarter else current_start
    keep = (series.timestamps_ms >= day_start) & (series.timestamps_ms < until_ms)
    if not keep.any():
        return EnergyToday(kwh=None, until_ms=until_ms)
    return EnergyToday(kwh=float(series.energy_kwh[keep].sum()), until_ms=until_ms)


def energy_today_kwh(*, access: Access, facility: Facility, now_ms: int) -> float | None:
    """Today's kWh so far, for pages and the park overview (whose live part starts when they connect)."""
    return energy_today(access=access, facility=facility, now_ms=now_ms).kwh


def total_channels(*, access: Access, facility: Facility, quantity: str) -> list[ChannelInfo]:
    """The channels whose sum is the facility's total of `quantity`."""
    channels = [
        ChannelInfo(id=c.pk, device_id=c.device_id, load_id=c.load_id, quantity=c.quantity, unit=c.unit, phase=c.phase)
        for c in channel_list(access=access).filter(device__facility=facility, quantity=quantity)
    ]
    mains_ids = load_list(access=access).filter(facility=facility, kind=Load.Kind.MAINS).values_list("id", flat=True)
    counted, mains = counted_channels(channels, quantity=quantity, mains_load_ids=mains_ids)
    return [c for c in counted.values() if not mains or c.load_id in mains]


def sum_by_interval(
    *, access: Access, channels: list[ChannelInfo], start_ms: int, end_ms: int, resolution: str, aggregate: str
) -> dict[int, float]:
    """Per interval start: the sum over channels of `aggregate`, in kW or kWh."""
    totals: dict[int, float] = {}
    if not channels or end_ms <= start_ms:
        return totals
    by_id = {c.id: c for c in channels}
    answer = readings_series(
        access=access,
        channel_ids=list(by_id),
        start=_dt(start_ms),
        end=_dt(end_ms),
        resolution=resolution,  # type: ignore[arg-type]
        aggregates=[aggregate],  # type: ignore[list-item]
    )
    for channel_id, series in answer.items():
        factor = UNIT_TO_KILO[by_id[channel_id].unit]
        for start, value in zip(series.timestamps_ms.tolist(), series.values[aggregate].tolist(), strict=True):
            if np.isfinite(value):
                totals[start] = totals.get(start, 0.0) + value * factor
    return totals


def month_peak(*, access: Access, facility: Facility, now_ms: int) -> Peak | None:
    """The highest completed 15-minute demand of the month, as billing stores it (the Peaks page's and
    `/api/v1/peaks/`' figure); the running quarter is the live projection's business."""
    peak = month_peak_stored(access=access, facility=facility, now_ms=now_ms)
    return Peak(kw=peak.kw, interval_start_ms=peak.start_ms) if peak else None
