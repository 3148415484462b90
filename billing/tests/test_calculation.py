"""The demand options of `compute_bill` on small synthetic months: windows, ratchet, utilisation, negative prices."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from billing.calculation import History, MonthPeak, Segment, Terms, Usage, compute_bill

TZ = ZoneInfo("Europe/Berlin")
FLAT = [[0] * 24 for _ in range(12)]


def month_usage(kwh_at: dict[datetime, float], base_kwh: float = 1.0) -> Usage:
    lo = int(datetime(2026, 6, 1, tzinfo=TZ).timestamp() * 1000)
    hi = int(datetime(2026, 7, 1, tzinfo=TZ).timestamp() * 1000)
    starts = np.arange(lo, hi, 900_000, dtype=np.int64)
    kwh = np.full(len(starts), base_kwh)
    for moment, value in kwh_at.items():
        kwh[(int(moment.timestamp() * 1000) - lo) // 900_000] = value
    return Usage(starts, kwh)


def terms(**overrides) -> Terms:
    values = {
        "version_id": 1,
        "tariff_name": "T",
        "currency": "EUR",
        "energy_rates": (0.2,),
        "schedules": {"weekday": FLAT, "weekend": FLAT, "holiday": FLAT},
        "demand_price": 10.0,
    }
    values.update(overrides)
    return Terms(**values)


def bill(usage: Usage, t: Terms, history: History = History()):  # noqa: B008
    segment = Segment(int(usage.starts_ms[0]), int(usage.starts_ms[-1]) + 900_000, 30, t)
    return compute_bill(
        usage=usage, segments=[segment], tz=TZ, holidays=[], month_days=30, year_days=365, meters=1, history=history
    )


def demand_lines(result):
    return [line for line in result.lines if line.kind == "demand"]


def test_a_peak_outside_the_demand_window_is_not_billed():
    night, day = datetime(2026, 6, 10, 3, 0, tzinfo=TZ), datetime(2026, 6, 10, 11, 0, tzinfo=TZ)  # a Wednesday
    usage = month_usage({night: 20.0, day: 8.0})
    windows = [[1 if 8 <= hour < 20 else 0 for hour in range(24)] for _ in range(12)]
    none = [[0] * 24 for _ in range(12)]
    result = bill(usage, terms(demand_windows={"weekday": windows, "weekend": none, "holiday": none}))
    assert result.peak_kw == 32.0 and result.peak_start_ms == int(day.timestamp() * 1000)
    assert float(demand_lines(result)[0].amount) == pytest.approx(320.0)
    assert bill(usage, terms()).peak_kw == 80.0  # without windows the night interval counts


def test_a_ratchet_bills_at_least_its_share_of_the_highest_recent_month():
    usage = month_usage({datetime(2026, 6, 3, 12, 0, tzinfo=TZ): 5.0})  # 20 kW this month
    t = terms(demand_mode="ratchet", ratchet_percent=80.0, ratchet_months=11)
    result = bill(usage, t, History(ratchet_peaks=(30.0, 50.0, 10.0)))
    assert demand_lines(result)[0].quantity == pytest.approx(40.0)  # 80 % of 50 kW beats 20 kW
    assert float(demand_lines(result)[0].amount) == pytest.approx(400.0)
    assert demand_lines(bill(usage, t, History(ratchet_peaks=(10.0,))))[0].quantity == pytest.approx(20.0)


def test_the_utilisation_hours_pick_the_leistungspreis_and_arbeitspreis_pair():
    usage = month_usage({datetime(2026, 6, 3, 12, 0, tzinfo=TZ): 5.0})  # 20 kW peak, 2,883 kWh in June
    pair = {
        "low_use_demand_price": 15.0,
        "low_use_energy_price": 0.08,
        "high_use_demand_price": 120.0,
        "high_use_energy_price": 0.02,
    }
    t = terms(demand_mode="utilisation", **pair)
    month_kwh = float(usage.kwh.sum())
    low = bill(usage, t, History(earlier_peaks=(MonthPeak(2026, 5, 20.0, 31),), year_kwh_before=1_000.0))
    hours = (1_000.0 + month_kwh) / 20.0
    assert hours < 2500
    work = next(line for line in low.lines if line.label.startswith("Netzentgelt"))
    assert work.unit_price == 0.08 and work.quantity == pytest.approx(month_kwh)
    assert float(demand_lines(low)[0].amount) == pytest.approx(round(20.0 * 15.0 * 30 / 365, 2))
    high = bill(usage, t, History(earlier_peaks=(MonthPeak(2026, 5, 20.0, 31),), year_kwh_before=60_000.0))
    assert next(line for line in high.lines if line.label.startswith("Netzentgelt")).unit_price == 0.02
    assert float(demand_lines(high)[0].amount) == pytest.approx(round(20.0 * 120.0 * 30 / 365, 2))


def test_negative_energy_prices_credit_the_bill():
    usage = month_usage({})
    result = bill(usage, terms(energy_rates=(-0.05,), demand_price=0.0))
    energy = [line for line in result.lines if line.kind == "energy"]
    assert float(energy[0].amount) == pytest.approx(-0.05 * float(usage.kwh.sum()), abs=0.005)
    assert result.net < 0
