"""An independent bill computation for the tests: plain Python and NumPy over the raw readings.

It shares no code with `billing/`: interval energy from the counters' raw differences, the local
calendar from `datetime` and `zoneinfo` per interval, holidays straight from the `holidays` library.
"""

from __future__ import annotations

import calendar as pycalendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import numpy as np

Q = 900_000


def interval_kwh(ts: np.ndarray, counter_wh: np.ndarray) -> dict[int, float]:
    """kWh per 15-minute interval start: each reading's increase goes to the interval that holds it."""
    deltas = np.concatenate(([0.0], np.diff(counter_wh))) / 1000.0
    out: dict[int, float] = {}
    for t, d in zip((ts // Q * Q).tolist(), deltas.tolist(), strict=True):
        out[t] = out.get(t, 0.0) + d
    return out


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[int, int]:
    first = datetime(year, month, 1, tzinfo=tz)
    nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return int(first.timestamp() * 1000), int(nxt.timestamp() * 1000)


@dataclass
class RefBill:
    energy: float = 0.0  # TOU energy and tiers
    levies: float = 0.0
    demand: float = 0.0
    backbill: float = 0.0
    fixed: float = 0.0
    kwh: float = 0.0
    peak_kw: float = 0.0
    peak_start_ms: int = 0
    intervals: int = 0
    annual_peak_kw: float = 0.0
    per_interval: dict[int, float] = field(default_factory=dict)

    @property
    def net(self) -> float:
        return self.energy + self.levies + self.demand + self.backbill + self.fixed

    def gross(self, vat_percent: float) -> float:
        return self.net * (1 + vat_percent / 100)


def reference_bill(
    *,
    kwh_by_interval: dict[int, float],
    year: int,
    month: int,
    tz: ZoneInfo,
    region: str,
    versions: list[dict],
    meters: int,
    earlier_peaks: list[tuple[int, float]] = (),  # (days, kW) of this year's earlier months
) -> RefBill:
    lo, hi = month_bounds(year, month, tz)
    country, _, sub = region.partition("-")
    calendar_days = holidays.country_holidays(country, subdiv=sub or None, years=year)
    month_days = pycalendar.monthrange(year, month)[1]
    year_days = 366 if pycalendar.isleap(year) else 365

    def version_on(day: date) -> dict:
        return next(v for v in versions if v["valid_from"] <= day and (v["valid_to"] is None or day <= v["valid_to"]))

    bill = RefBill()
    cumulative = 0.0
    peak = -1.0
    for start in range(lo, hi, Q):
        bill.intervals += 1
        local = datetime.fromtimestamp(start / 1000, tz=UTC).astimezone(tz)
        v = version_on(local.date())
        if local.date() in calendar_days:
            schedule = v["holiday_schedule"]
        elif local.weekday() >= 5:
            schedule = v["weekend_schedule"]
        else:
            schedule = v["weekday_schedule"]
        kwh = kwh_by_interval.get(start, 0.0)
        rate = v["energy_rates"][schedule[local.month - 1][local.hour]]
        bill.energy += kwh * rate
        bill.levies += kwh * sum(levy["per_kwh"] for levy in v["levies"])
        before, cumulative = cumulative, cumulative + kwh
        low = 0.0
        for tier in v["energy_tiers"]:
            high = float("inf") if tier["up_to_kwh"] is None else tier["up_to_kwh"]
            part = min(max(cumulative, low), high) - min(max(before, low), high)
            bill.energy += part * tier["adder"]
            low = high
        bill.kwh += kwh
        bill.per_interval[start] = kwh
        if kwh * 4 > peak:
            peak, bill.peak_start_ms = kwh * 4, start
    bill.peak_kw = peak
    earlier_max = max((kw for _, kw in earlier_peaks), default=0.0)
    bill.annual_peak_kw = max(peak, earlier_max)
    day = date(year, month, 1)
    while day.month == month:
        v = version_on(day)
        bill.fixed += v["fixed_per_day"] + (v["fixed_per_month"] + meters * v["fixed_per_meter_month"]) / month_days
        if v["demand_mode"] == "monthly":
            bill.demand += v["demand_price"] * peak / month_days
        elif v["demand_mode"] == "annual":
            bill.demand += v["demand_price"] * bill.annual_peak_kw / year_days
        day += timedelta(days=1)
    first = version_on(date(year, month, 1))
    if first["demand_mode"] == "annual" and earlier_peaks and peak > earlier_max:
        bill.backbill = (peak - earlier_max) * first["demand_price"] * sum(d for d, _ in earlier_peaks) / year_days
    return bill
