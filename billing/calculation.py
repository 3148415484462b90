"""Bill arithmetic over a month's 15-minute energy: pure NumPy, no Django (like `readings/rollups.py`).

Rules (docs/billing.md):
- 15-minute demand is the interval's energy × 4 (kW), as a utility meter measures it.
- Energy is priced interval by interval at the time-of-use price of the interval's local start
  (month × day type × hour; day types: weekday, weekend, holiday). Monthly tiers add to that price
  for the kWh that fall in each block, filled in time order.
- A month that spans a change of contract or tariff version is split at the change (local
  midnight): each part is priced by its own version, fixed and demand charges pro rata by days.
- Demand: the month's highest 15-minute demand inside the demand windows, billed per kW and month
  (`monthly`); at least `ratchet_percent` of the highest of the last `ratchet_months` months
  (`ratchet`); or the running highest of the calendar year, per kW and year, billed by the month's
  share of the year's days (`annual`, `utilisation`). A new annual peak back-bills the year's
  earlier months by the increase. `utilisation` picks the Leistungspreis/Arbeitspreis pair by
  annual kWh ÷ annual peak kW, split at `utilisation_split_hours`.
- Every amount is rounded to the cent per line; VAT per rate on the sum of its lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

INTERVAL_MS = 900_000
DAY_MS = 86_400_000
WEEKDAY, WEEKEND, HOLIDAY = 0, 1, 2
DAY_TYPES = ("weekday", "weekend", "holiday")
CENT = Decimal("0.01")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def money(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Terms:
    """A tariff version's numbers."""

    version_id: int
    tariff_name: str
    currency: str
    energy_rates: tuple[float, ...]
    schedules: dict[str, list[list[int]]]
    tiers: tuple[tuple[float | None, float], ...] = ()
    demand_mode: str = "monthly"
    demand_price: float = 0.0
    demand_windows: dict[str, list[list[int]]] = field(default_factory=dict)
    ratchet_percent: float = 0.0
    ratchet_months: int = 11
    utilisation_split_hours: float = 2500.0
    low_use_demand_price: float = 0.0
    low_use_energy_price: float = 0.0
    high_use_demand_price: float = 0.0
    high_use_energy_price: float = 0.0
    fixed_per_day: float = 0.0
    fixed_per_month: float = 0.0
    fixed_per_meter_month: float = 0.0
    levies: tuple[tuple[str, float], ...] = ()
    vat_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A part of the month priced by one tariff version: [start_ms, end_ms), whole local days."""

    start_ms: int
    end_ms: int
    days: int
    terms: Terms


@dataclass(frozen=True, slots=True)
class MonthPeak:
    year: int
    month: int
    kw: float
    days: int


@dataclass(frozen=True, slots=True)
class Usage:
    """A facility's month on the 15-minute grid: `kwh` of the main meter, `loads` of the submeters."""

    starts_ms: IntArray
    kwh: FloatArray
    loads: dict[int, FloatArray] = field(default_factory=dict)
    estimated: npt.NDArray[np.bool_] | None = None  # part of the interval's energy is a gap's spread share


@dataclass(frozen=True, slots=True)
class History:
    """What an annual or ratchet demand needs from earlier months (each month's peak, in windows)."""

    earlier_peaks: tuple[MonthPeak, ...] = ()  # this calendar year's months before the bill's
    ratchet_peaks: tuple[float, ...] = ()  # the last N months before the bill's
    year_kwh_before: float = 0.0


@dataclass(frozen=True, slots=True)
class AllocationInput:
    key: str = "kwh"  # equal | kwh | area
    names: dict[int, str] = field(default_factory=dict)
    cost_centres: dict[int, str] = field(default_factory=dict)
    areas: dict[int, float] = field(default_factory=dict)


@dataclass(slots=True)
class Line:
    kind: str
    label: str
    quantity: float
    unit: str
    unit_price: float
    amount: Decimal
    segment: int = 0
    interval_start_ms: int | None = None


@dataclass(slots=True)
class AllocationRow:
    load_id: int | None  # None: unmetered (main meter minus submeters)
    name: str
    cost_centre: str
    kwh: float
    energy: Decimal
    demand: Decimal
    fixed: Decimal
    vat: Decimal
    total: Decimal
    peak_kw: float


@dataclass(slots=True)
class BillResult:
    currency: str
    lines: list[Line]
    net: Decimal
    vat: Decimal
    gross: Decimal
    energy_kwh: float
    peak_kw: float | None
    peak_start_ms: int | None
    billed_demand_kw: float | None
    allocation: list[AllocationRow]
    top_peaks: list[tuple[int, float]]
    projected_gross: Decimal | None = None
    peak_estimated: bool = False  # the peak interval's energy is partly a gap's spread share


def utc_offsets_ms(starts_ms: IntArray, tz: ZoneInfo) -> IntArray:
    """The zone's UTC offset at each instant, evaluated once per day unless the day changes offset."""
    offsets = np.empty(len(starts_ms), dtype=np.int64)
    if len(starts_ms) == 0:
        return offsets

    def offset(ms: int) -> int:
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz)
        return int(moment.utcoffset().total_seconds()) * 1000  # type: ignore[union-attr]

    step = DAY_MS // INTERVAL_MS
    for lo in range(0, len(starts_ms), step):
        hi = min(lo + step, len(starts_ms))
        first, last = offset(int(starts_ms[lo])), offset(int(starts_ms[hi - 1]))
        if first == last:
            offsets[lo:hi] = first
        else:
            offsets[lo:hi] = [offset(int(ms)) for ms in starts_ms[lo:hi]]
    return offsets


@dataclass(frozen=True, slots=True)
class Calendar:
    month_index: IntArray  # 0..11
    hour: IntArray
    day_type: IntArray
    local_day: IntArray  # days since 1970-01-01, local


def calendar(starts_ms: IntArray, tz: ZoneInfo, holidays: Sequence[date]) -> Calendar:
    local_ms = starts_ms + utc_offsets_ms(starts_ms, tz)
    local_day = local_ms // DAY_MS
    months = local_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    day_type = np.where(weekday >= 5, WEEKEND, WEEKDAY)
    if holidays:
        epoch = date(1970, 1, 1)
        holiday_days = np.array([(d - epoch).days for d in holidays], dtype=np.int64)
        day_type = np.where(np.isin(local_day, holiday_days), HOLIDAY, day_type)
    return Calendar(
        month_index=months.astype(np.int64),
        hour=((local_ms % DAY_MS) // 3_600_000).astype(np.int64),
        day_type=day_type.astype(np.int64),
        local_day=local_day,
    )


@lru_cache(maxsize=256)
def _grid_calendar(start_ms: int, intervals: int, tz: ZoneInfo, holidays: tuple[date, ...]) -> Calendar:
    """`calendar` of a whole 15-minute grid, built once per zone, month and holiday region: every bill of
    the month in that zone shares it (its UTC offsets take a zone lookup per day). Read-only arrays."""
    cal = calendar(np.arange(intervals, dtype=np.int64) * INTERVAL_MS + start_ms, tz, holidays)
    for array in (cal.month_index, cal.hour, cal.day_type, cal.local_day):
        array.setflags(write=False)
    return cal


def _calendar_of(starts_ms: IntArray, tz: ZoneInfo, holidays: Sequence[date]) -> Calendar:
    n = len(starts_ms)
    if n and int(starts_ms[-1]) - int(starts_ms[0]) == (n - 1) * INTERVAL_MS:  # the plain 15-minute grid
        return _grid_calendar(int(starts_ms[0]), n, tz, tuple(holidays))
    return calendar(starts_ms, tz, holidays)


def _top(candidates: FloatArray, k: int) -> IntArray:
    """Indices of the k highest finite-or-not candidates, highest first, ties to the earliest: what
    `np.argsort(-candidates, kind="stable")[:k]` gives, without sorting the whole month."""
    if len(candidates) <= k:
        return np.argsort(-candidates, kind="stable")
    threshold = np.partition(candidates, len(candidates) - k)[len(candidates) - k]
    index = np.flatnonzero(candidates >= threshold)
    return index[np.argsort(-candidates[index], kind="stable")][:k]


def _lookup(schedules: dict[str, list[list[int]]], cal: Calendar, mask: npt.NDArray[np.bool_]) -> IntArray:
    table = np.array([schedules[name] for name in DAY_TYPES], dtype=np.int64)  # 3 × 12 × 24
    return table[cal.day_type[mask], cal.month_index[mask], cal.hour[mask]]


def _tier_portions(kwh: FloatArray, tiers: Sequence[tuple[float | None, float]]) -> list[FloatArray]:
    """The kWh of each interval that fall in each monthly block, filling the blocks in time order."""
    after = np.cumsum(kwh)
    before = after - kwh
    portions, lo = [], 0.0
    for up_to, _adder in tiers:
        hi = np.inf if up_to is None else float(up_to)
        portions.append(np.clip(after, lo, hi) - np.clip(before, lo, hi))
        lo = hi
    return portions


def _distribute(total: Decimal, weights: Sequence[float]) -> list[Decimal]:
    """Split `total` into cents proportional to `weights` (largest remainder): the parts sum exactly."""
    cents = int((total / CENT).to_integral_value())
    weight_sum = float(sum(weights))
    if not weights:
        return []
    if weight_sum == 0:
        weights, weight_sum = [1.0] * len(weights), float(len(weights))
    raw = [cents * w / weight_sum for w in weights]
    floors = [int(np.floor(r)) for r in raw]
    left = cents - sum(floors)
    order = sorted(range(len(raw)), key=lambda i: raw[i] - floors[i], reverse=True)
    for i in order[: max(0, min(left, len(order)))]:
        floors[i] += 1
    if left > len(order) or left < 0:  # only with mixed signs: the remainder goes to the largest part
        biggest = max(range(len(raw)), key=lambda i: abs(raw[i]))
        floors[biggest] += cents - sum(floors)
    return [Decimal(c) * CENT for c in floors]


def compute_bill(
    *,
    usage: Usage,
    segments: Sequence[Segment],
    tz: ZoneInfo,
    holidays: Sequence[date],
    month_days: int,
    year_days: int,
    meters: int,
    history: History = History(),  # noqa: B008 - frozen
    allocation: AllocationInput = AllocationInput(),  # noqa: B008 - frozen
    elapsed_fraction: float | None = None,
) -> BillResult:
    """One facility's bill for one month (see the module's rules)."""
    if not segments:
        raise ValueError("a bill needs at least one tariff segment")
    currency = segments[0].terms.currency
    starts = usage.starts_ms
    kwh = np.nan_to_num(usage.kwh)
    cal = _calendar_of(starts, tz, holidays)
    lines: list[Line] = []
    cost = np.zeros(len(starts))  # energy-dependent cost per interval, for the allocation
    rate_at = np.zeros(len(starts))
    window = np.zeros(len(starts), dtype=bool)
    seg_of = np.full(len(starts), -1, dtype=np.int64)
    billed_kwh = 0.0
    for s, segment in enumerate(segments):
        inside = (starts >= segment.start_ms) & (starts < segment.end_ms)
        seg_of[inside] = s
        terms = segment.terms
        window[inside] = _lookup(terms.demand_windows, cal, inside).astype(bool) if terms.demand_windows else True
        periods = _lookup(terms.schedules, cal, inside)
        rates = np.asarray(terms.energy_rates, dtype=np.float64)[periods]
        rate_at[inside] = rates
        seg_kwh = kwh[inside]
        billed_kwh += float(seg_kwh.sum())
        cost[inside] += seg_kwh * rates
        for period in sorted(set(periods.tolist())):
            in_period = periods == period
            quantity = float(seg_kwh[in_period].sum())
            rate = terms.energy_rates[period]
            lines.append(
                Line(
                    "energy",
                    f"{terms.tariff_name}: energy, period {period + 1}",
                    quantity,
                    "kWh",
                    rate,
                    money(quantity * rate),
                    s,
                )
            )
        for name, per_kwh in terms.levies:
            quantity = float(seg_kwh.sum())
            cost[inside] += seg_kwh * per_kwh
            rate_at[inside] += per_kwh
            lines.append(Line("levy", name, quantity, "kWh", per_kwh, money(quantity * per_kwh), s))
    # Tiers fill by the month's kWh in time order; each interval's block adders use its own version.
    for s, segment in enumerate(segments):
        if not segment.terms.tiers:
            continue
        inside = seg_of == s
        for t, portion in enumerate(_tier_portions(kwh, segment.terms.tiers)):
            adder = segment.terms.tiers[t][1]
            part = np.where(inside, portion, 0.0)
            quantity = float(part.sum())
            if adder == 0 or quantity == 0:
                continue
            cost += part * adder
            limit = segment.terms.tiers[t][0]
            label = f"tier {t + 1}" + (f" (up to {limit:g} kWh)" if limit is not None else "")
            lines.append(
                Line(
                    "energy",
                    f"{segment.terms.tariff_name}: {label}",
                    quantity,
                    "kWh",
                    adder,
                    money(quantity * adder),
                    s,
                )
            )

    # Demand: the month's highest 15-minute demand within the windows of the version in force.
    demand = kwh * 4.0
    billed = seg_of >= 0
    candidates = np.where(billed & window, demand, -np.inf)
    peak_kw = peak_start = None
    peak_estimated = False
    top: list[tuple[int, float]] = []
    if len(candidates) and np.isfinite(candidates.max()):
        order = _top(candidates, 10)
        top = [(int(starts[i]), float(demand[i])) for i in order if np.isfinite(candidates[i])]
        peak_index = int(order[0])
        peak_kw, peak_start = float(demand[peak_index]), int(starts[peak_index])
        peak_estimated = usage.estimated is not None and bool(usage.estimated[peak_index])
    month_peak = peak_kw or 0.0
    earlier_max = max((p.kw for p in history.earlier_peaks), default=0.0)
    annual_peak = max(earlier_max, month_peak)
    billed_demand: float | None = None
    for s, segment in enumerate(segments):
        terms = segment.terms
        share_month = segment.days / month_days
        if terms.demand_mode in ("annual", "utilisation"):
            billed_demand = annual_peak
            price = terms.demand_price
            if terms.demand_mode == "utilisation":
                year_kwh = history.year_kwh_before + float(kwh[billed].sum())
                hours = year_kwh / annual_peak if annual_peak > 0 else 0.0
                high = hours >= terms.utilisation_split_hours
                price = terms.high_use_demand_price if high else terms.low_use_demand_price
                work = terms.high_use_energy_price if high else terms.low_use_energy_price
                inside = seg_of == s
                quantity = float(kwh[inside].sum())
                cost[inside] += kwh[inside] * work
                rate_at[inside] += work
                lines.append(
                    Line(
                        "levy",
                        f"Netzentgelt Arbeitspreis ({hours:,.0f} h use)",
                        quantity,
                        "kWh",
                        work,
                        money(quantity * work),
                        s,
                    )
                )
            share = segment.days / year_days
            lines.append(
                Line(
                    "demand",
                    f"{terms.tariff_name}: annual peak, {segment.days} of {year_days} days",
                    annual_peak,
                    "kW",
                    price * share,
                    money(annual_peak * price * share),
                    s,
                    peak_start if month_peak >= earlier_max else None,
                )
            )
            if s == 0 and history.earlier_peaks and month_peak > earlier_max:
                back_days = sum(p.days for p in history.earlier_peaks)
                increase = month_peak - earlier_max
                unit = price * back_days / year_days
                lines.append(
                    Line(
                        "backbill",
                        f"New annual peak: back-billing {back_days} earlier days of the year",
                        increase,
                        "kW",
                        unit,
                        money(increase * unit),
                        s,
                        peak_start,
                    )
                )
        elif terms.demand_mode == "ratchet":
            floor = terms.ratchet_percent / 100.0 * max(history.ratchet_peaks[: terms.ratchet_months], default=0.0)
            billed_demand = max(month_peak, floor)
            label = f"{terms.tariff_name}: demand (ratchet {terms.ratchet_percent:g} %)"
            lines.append(
                Line(
                    "demand",
                    label,
                    billed_demand,
                    "kW",
                    terms.demand_price * share_month,
                    money(billed_demand * terms.demand_price * share_month),
                    s,
                    peak_start if billed_demand == month_peak else None,
                )
            )
        elif terms.demand_price:
            billed_demand = month_peak
            lines.append(
                Line(
                    "demand",
                    f"{terms.tariff_name}: month peak",
                    month_peak,
                    "kW",
                    terms.demand_price * share_month,
                    money(month_peak * terms.demand_price * share_month),
                    s,
                    peak_start,
                )
            )
        if terms.fixed_per_day:
            lines.append(
                Line(
                    "fixed",
                    "Standing charge (Grundpreis)",
                    segment.days,
                    "d",
                    terms.fixed_per_day,
                    money(segment.days * terms.fixed_per_day),
                    s,
                )
            )
        if terms.fixed_per_month:
            lines.append(
                Line(
                    "fixed",
                    "Monthly charge",
                    share_month,
                    "mo",
                    terms.fixed_per_month,
                    money(share_month * terms.fixed_per_month),
                    s,
                )
            )
        if terms.fixed_per_meter_month:
            quantity = meters * share_month
            lines.append(
                Line(
                    "fixed",
                    "Metering (Messstellenbetrieb)",
                    quantity,
                    "meter·mo",
                    terms.fixed_per_meter_month,
                    money(quantity * terms.fixed_per_meter_month),
                    s,
                )
            )
    net = sum((line.amount for line in lines), Decimal(0))
    by_rate: dict[float, Decimal] = {}
    for line in lines:
        rate = segments[line.segment].terms.vat_percent
        by_rate[rate] = by_rate.get(rate, Decimal(0)) + line.amount
    vat_lines = [
        Line("vat", f"VAT {rate:g} %", float(base), currency, rate / 100.0, money(base * Decimal(str(rate)) / 100))
        for rate, base in by_rate.items()
        if rate
    ]
    vat = sum((line.amount for line in vat_lines), Decimal(0))
    rows = _allocate(
        usage=usage,
        kwh=kwh,
        cost=cost,
        rate_at=rate_at,
        peak_start=peak_start,
        lines=lines,
        vat=vat,
        allocation=allocation,
    )
    projected = None
    if elapsed_fraction is not None and 0 < elapsed_fraction < 1:
        energy_part = sum((line.amount for line in lines if line.kind in ("energy", "levy")), Decimal(0))
        vat_share = (vat / net) if net else Decimal(0)
        extra = energy_part * Decimal(str(1 / elapsed_fraction - 1))
        projected = money(net + vat + extra * (1 + vat_share))
    return BillResult(
        currency=currency,
        lines=[*lines, *vat_lines],
        net=net,
        vat=vat,
        gross=net + vat,
        energy_kwh=billed_kwh,
        peak_kw=peak_kw,
        peak_start_ms=peak_start,
        billed_demand_kw=billed_demand,
        allocation=rows,
        top_peaks=top,
        projected_gross=projected,
        peak_estimated=peak_estimated,
    )


def _allocate(
    *,
    usage: Usage,
    kwh: FloatArray,
    cost: FloatArray,
    rate_at: FloatArray,
    peak_start: int | None,
    lines: Sequence[Line],
    vat: Decimal,
    allocation: AllocationInput,
) -> list[AllocationRow]:
    """Shares of the bill per load and the unmetered remainder; each column sums to the bill exactly."""
    load_ids = sorted(usage.loads)
    # The price each kWh paid at its time of use (energy, tiers, levies), so shares follow time of use.
    unit = np.where(kwh != 0, cost / np.where(kwh != 0, kwh, 1.0), rate_at)
    load_kwh = {lid: np.nan_to_num(usage.loads[lid]) for lid in load_ids}
    energy_weights = [float((load_kwh[lid] * unit).sum()) for lid in load_ids]
    energy_weights.append(float(cost.sum()) - sum(energy_weights))
    kwh_weights = [float(load_kwh[lid].sum()) for lid in load_ids]
    kwh_weights.append(float(kwh.sum()) - sum(kwh_weights))
    peak_weights = [0.0] * (len(load_ids) + 1)
    if peak_start is not None:
        at = int(np.searchsorted(usage.starts_ms, peak_start))
        peak_weights = [float(load_kwh[lid][at]) * 4 for lid in load_ids]
        peak_weights.append(float(kwh[at]) * 4 - sum(peak_weights))
    if allocation.key == "equal":
        fixed_weights = [1.0] * (len(load_ids) + 1)
    elif allocation.key == "area":
        fixed_weights = [allocation.areas.get(lid, 0.0) for lid in load_ids] + [0.0]
    else:
        fixed_weights = [max(w, 0.0) for w in kwh_weights]

    def total(kinds: tuple[str, ...]) -> Decimal:
        return sum((line.amount for line in lines if line.kind in kinds), Decimal(0))

    energy = _distribute(total(("energy", "levy")), energy_weights)
    demand = _distribute(total(("demand", "backbill")), peak_weights)
    fixed = _distribute(total(("fixed",)), fixed_weights)
    nets = [float(e + d + f) for e, d, f in zip(energy, demand, fixed, strict=True)]
    vats = _distribute(vat, nets)
    rows = []
    for i, lid in enumerate([*load_ids, None]):
        name = allocation.names.get(lid, str(lid)) if lid is not None else "Unmetered (main meter minus submeters)"
        rows.append(
            AllocationRow(
                load_id=lid,
                name=name,
                cost_centre=allocation.cost_centres.get(lid, "") if lid is not None else "",
                kwh=kwh_weights[i],
                energy=energy[i],
                demand=demand[i],
                fixed=fixed[i],
                vat=vats[i],
                total=energy[i] + demand[i] + fixed[i] + vats[i],
                peak_kw=peak_weights[i],
            )
        )
    return rows
