"""The live pages' window on the readings store: the one place the portal reads history.

- the last 15 minutes of raw readings, for the charts' snapshot;
- today's kWh, in the facility's time zone, from the energy counters' daily rollup (or, where no
  counter reported today, from the power's 15-minute averages);
- the month's demand peak so far: the highest 15-minute average of the facility's total power
  over the month's completed intervals.

"Total" follows `portal.livestate.counted_channels`, so these figures and the live ones agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from accounts.access import Access
from devices.models import Facility, Load
from devices.quantities import Quantity
from devices.selectors import channel_list, load_list
from portal.livestate import UNIT_TO_KILO, ChannelInfo, counted_channels
from readings.rollups import containing_interval
from readings.selectors import MAX_CHANNELS, readings_series

QUARTER_HOURS_PER_HOUR = 4


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


def energy_today_kwh(*, access: Access, facility: Facility, now_ms: int) -> float | None:
    tz = ZoneInfo(facility.timezone)
    day_start, _ = containing_interval("1d", tz, now_ms)
    counters = total_channels(access=access, facility=facility, quantity=Quantity.ACTIVE_ENERGY)
    if counters:
        days = sum_by_interval(
            access=access, channels=counters, start_ms=day_start, end_ms=now_ms, resolution="1d", aggregate="delta"
        )
        if day_start in days:
            return days[day_start]
    # No counter, or none that reported today: the power's 15-minute averages tell the energy too.
    power = total_channels(access=access, facility=facility, quantity=Quantity.ACTIVE_POWER)
    quarters = sum_by_interval(
        access=access, channels=power, start_ms=day_start, end_ms=now_ms, resolution="15m", aggregate="avg"
    )
    if not quarters:
        return None
    return sum(kw / QUARTER_HOURS_PER_HOUR for start, kw in quarters.items() if start >= day_start)


def month_peak(*, access: Access, facility: Facility, now_ms: int) -> Peak | None:
    tz = ZoneInfo(facility.timezone)
    month_start, _ = containing_interval("1mo", tz, now_ms)
    current_start, _ = containing_interval("15m", tz, now_ms)
    power = total_channels(access=access, facility=facility, quantity=Quantity.ACTIVE_POWER)
    quarters = sum_by_interval(
        access=access, channels=power, start_ms=month_start, end_ms=current_start, resolution="15m", aggregate="avg"
    )
    # Only completed intervals of this month: the running one is the live projection's business.
    done = {start: kw for start, kw in quarters.items() if month_start <= start < current_start}
    if not done:
        return None
    start, kw = max(done.items(), key=lambda item: item[1])
    return Peak(kw=kw, interval_start_ms=start)
