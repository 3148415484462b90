"""Reads behind the portal's analysis views: any period of a facility or device, comparisons, the
carpet plot, the load breakdown and the park benchmark.

Every figure comes from `readings.selectors.readings_series`, the selector behind the integrator
API's `/api/v1/readings/series/`, at the resolution `period_resolve` picks, so a chart and the API
agree for the same channels, period and resolution. Periods are calendar periods in the facility's
time zone; totals follow `portal.livestate.counted_channels`, like the live figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from django.utils.translation import gettext_lazy as _

from accounts.access import Access
from devices.models import Facility
from devices.quantities import Quantity, is_counter
from devices.validators import WEEKDAYS
from portal.livestate import UNIT_TO_KILO, ChannelInfo, counted_channels
from portal.selectors import LiveLayout
from readings.rollups import interval_edges
from readings.selectors import MAX_CHANNELS, readings_series

RANGES: tuple[str, ...] = ("live", "today", "yesterday", "week", "month", "year", "custom")
RANGE_LABELS = {
    "live": _("Live"),
    "today": _("Today"),
    "yesterday": _("Yesterday"),
    "week": _("This week"),
    "month": _("This month"),
    "year": _("This year"),
    "custom": _("Custom"),
}
Compare = Literal["previous", "last_year"]
COMPARES: tuple[str, ...] = ("previous", "last_year")
# The finest rollup that keeps a chart readable: the longest span each resolution is chosen for.
RESOLUTION_SPANS: tuple[tuple[timedelta, str], ...] = (
    (timedelta(days=31), "15m"),
    (timedelta(days=92), "1h"),
    (timedelta(days=3 * 366), "1d"),
)
MAX_CUSTOM_SPAN = timedelta(days=3660)
# A period answer holds at most this many channel intervals, as a JSON series of the API does; a
# facility with many channels gets its period at the next coarser resolution instead.
MAX_POINTS = 200_000
_COARSER = ("15m", "1h", "1d", "1mo")
_INTERVAL_MS = {"15m": 900_000, "1h": 3_600_000, "1d": 86_400_000, "1mo": 28 * 86_400_000}
QUARTER_MS = 900_000
HOUR_MS = 3_600_000
SLOTS_PER_DAY = 96
CARPET_MAX_DAYS = 366  # a year of quarter-hours is 35,136 cells at most: beyond that a carpet is unreadable


class AnalysisError(ValueError):
    """A period or comparison that cannot be answered; the views answer 400 with its message."""


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in the facility's time zone, and the rollup it is read from."""

    range: str
    start: datetime
    end: datetime
    resolution: str

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    @property
    def first_day(self) -> date:
        return self.start.date()  # in the facility's zone: the template's `date` filter would shift it to UTC

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _minus_year(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def resolution_for(span: timedelta) -> str:
    for longest, resolution in RESOLUTION_SPANS:
        if span <= longest:
            return resolution
    return "1mo"


def period_resolve(
    *, range_name: str, tz: ZoneInfo, now: datetime, start: date | None = None, end: date | None = None
) -> Period:
    """The calendar period a range names, as seen at `now`; custom takes first and last day (inclusive)."""
    today = now.astimezone(tz).date()
    if range_name == "today":
        first, after = today, today + timedelta(days=1)
    elif range_name == "yesterday":
        first, after = today - timedelta(days=1), today
    elif range_name == "week":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif range_name == "month":
        first = today.replace(day=1)
        after = _add_months(first, 1)
    elif range_name == "year":
        first, after = date(today.year, 1, 1), date(today.year + 1, 1, 1)
    elif range_name == "custom":
        if start is None or end is None:
            raise AnalysisError(_("Choose a first and a last day for a custom period."))
        if end < start:
            raise AnalysisError(_("The last day must not be before the first day."))
        first, after = start, end + timedelta(days=1)
        if after - first > MAX_CUSTOM_SPAN:
            raise AnalysisError(_("A custom period spans at most ten years."))
    else:
        raise AnalysisError(_("Unknown period %(range)r.") % {"range": range_name})
    begin, finish = _midnight(first, tz), _midnight(after, tz)
    return Period(range=range_name, start=begin, end=finish, resolution=resolution_for(after - first))


def period_compared(period: Period, *, compare: str) -> Period:
    """The period to overlay: the one just before (same calendar length), or the same one a year earlier."""
    tz = period.start.tzinfo
    assert isinstance(tz, ZoneInfo)
    first, after = period.start.date(), period.end.date()
    if compare == "last_year":
        first, after = _minus_year(first), _minus_year(after)
    elif compare == "previous":
        if period.range == "month":
            first, after = _add_months(first, -1), first
        elif period.range == "year":
            first, after = date(first.year - 1, 1, 1), first
        else:
            first, after = first - (after - first), first
    else:
        raise AnalysisError(_("Compare with the previous period or the same period last year."))
    return Period(
        range=period.range, start=_midnight(first, tz), end=_midnight(after, tz), resolution=period.resolution
    )


def period_for_channels(period: Period, *, channels: int) -> Period:
    """The period at the finest resolution from its own that keeps channels × intervals ≤ MAX_POINTS."""
    level = _COARSER.index(period.resolution)
    span = period.end_ms - period.start_ms
    while level < len(_COARSER) - 1 and channels * span / _INTERVAL_MS[_COARSER[level]] > MAX_POINTS:
        level += 1
    return Period(range=period.range, start=period.start, end=period.end, resolution=_COARSER[level])


# --- Reading the store ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grid:
    """Channels' rollup values on their common interval starts; NaN where a channel has no value."""

    starts_ms: npt.NDArray[np.int64]
    ends_ms: npt.NDArray[np.int64]
    values: dict[int, npt.NDArray[np.float64]]  # channel id -> aligned to starts_ms


def channel_grid(
    *, access: Access, channel_ids: Sequence[int], period: Period, resolution: str | None = None, aggregate: str = "avg"
) -> Grid:
    """One aggregate of each channel over the period, at the period's resolution unless told otherwise."""
    resolution = resolution or period.resolution
    ids = list(channel_ids)
    answers: dict[int, Any] = {}
    for first in range(0, len(ids), MAX_CHANNELS):
        answers.update(
            readings_series(
                access=access,
                channel_ids=ids[first : first + MAX_CHANNELS],
                start=period.start,
                end=period.end,
                resolution=resolution,  # type: ignore[arg-type]
                aggregates=[aggregate],  # type: ignore[list-item]
            )
        )
    if not answers:
        empty = np.empty(0, dtype=np.int64)
        return Grid(starts_ms=empty, ends_ms=empty, values={})
    first = next(iter(answers.values())).timestamps_ms
    aligned = all(np.array_equal(s.timestamps_ms, first) for s in answers.values())
    # Channels of one facility usually report the same intervals: then no merge is needed.
    starts = first if aligned else np.unique(np.concatenate([s.timestamps_ms for s in answers.values()]))
    ends = np.zeros(len(starts), dtype=np.int64)
    values: dict[int, npt.NDArray[np.float64]] = {}
    for channel_id, series in answers.items():
        assert series.ends_ms is not None
        if aligned:
            values[channel_id] = series.values[aggregate].astype(np.float64)
            ends = series.ends_ms
            continue
        column = np.full(len(starts), np.nan)
        positions = np.searchsorted(starts, series.timestamps_ms)
        column[positions] = series.values[aggregate]
        ends[positions] = series.ends_ms
        values[channel_id] = column
    # Intervals are whole rollup intervals overlapping the period; keep those that start inside it.
    inside = (starts >= period.start_ms) & (starts < period.end_ms)
    return Grid(
        starts_ms=starts[inside], ends_ms=ends[inside], values={cid: col[inside] for cid, col in values.items()}
    )


def _sum(columns: Iterable[npt.NDArray[np.float64]], length: int) -> npt.NDArray[np.float64]:
    """Sum per interval; NaN where no column has a value."""
    stack = [c for c in columns]
    if not stack:
        return np.full(length, np.nan)
    matrix = np.vstack(stack)
    total = np.nansum(matrix, axis=0)
    total[np.all(np.isnan(matrix), axis=0)] = np.nan
    return total


def energy_kwh(
    grid_kw: npt.NDArray[np.float64], starts_ms: npt.NDArray[np.int64], ends_ms: npt.NDArray[np.int64]
) -> float | None:
    """kWh of a power series: each interval's average kW times its length."""
    if not len(grid_kw) or np.all(np.isnan(grid_kw)):
        return None
    hours = (ends_ms - starts_ms) / HOUR_MS
    return float(np.nansum(grid_kw * hours))


def _none(values: npt.NDArray[np.float64]) -> list[float | None]:
    """JSON-ready: NaN (no value) becomes null."""
    listed: list[float | None] = values.tolist()
    if not np.isnan(values).any():
        return listed
    return [None if v is None or math.isnan(v) else v for v in listed]


def _iso(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat()


def _power_channels(layout: LiveLayout) -> tuple[dict[int, ChannelInfo], frozenset[int]]:
    return counted_channels(
        (c.info for c in layout.channels), quantity=Quantity.ACTIVE_POWER, mains_load_ids=layout.mains_load_ids
    )


def _total_kw(grid: Grid, counted: dict[int, ChannelInfo], mains: frozenset[int]) -> npt.NDArray[np.float64]:
    totals = [c for c in counted.values() if not mains or c.load_id in mains]
    return _sum((grid.values[c.id] * UNIT_TO_KILO[c.unit] for c in totals if c.id in grid.values), len(grid.starts_ms))


@dataclass(frozen=True, slots=True)
class Totals:
    starts_ms: npt.NDArray[np.int64]
    ends_ms: npt.NDArray[np.int64]
    kw: npt.NDArray[np.float64]
    kwh: float | None


def layout_totals(*, access: Access, layout: LiveLayout, period: Period, resolution: str | None = None) -> Totals:
    """The facility's (or device's) total kW per interval of the period, and its kWh."""
    counted, mains = _power_channels(layout)
    ids = [c.id for c in counted.values() if not mains or c.load_id in mains]
    if not ids:
        empty = np.empty(0, dtype=np.int64)
        return Totals(starts_ms=empty, ends_ms=empty, kw=np.empty(0), kwh=None)
    grid = channel_grid(access=access, channel_ids=ids, period=period, resolution=resolution)
    kw = _total_kw(grid, counted, mains)
    return Totals(
        starts_ms=grid.starts_ms, ends_ms=grid.ends_ms, kw=kw, kwh=energy_kwh(kw, grid.starts_ms, grid.ends_ms)
    )


def _percent(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return (now - before) / before * 100


def period_analysis(*, access: Access, layout: LiveLayout, period: Period, compare: str = "") -> dict[str, Any]:
    """Everything a period view draws, JSON-ready: each charted channel, the total, the loads and a comparison."""
    charted = [c for c in layout.channels if not is_counter(c.quantity)]
    period = period_for_channels(period, channels=len(charted))
    grid = channel_grid(access=access, channel_ids=[c.id for c in charted], period=period) if charted else None
    starts = grid.starts_ms if grid else np.empty(0, dtype=np.int64)
    ends = grid.ends_ms if grid else np.empty(0, dtype=np.int64)
    counted, mains = _power_channels(layout)
    total_kw = _total_kw(grid, counted, mains) if grid else np.empty(0)
    total_kwh = energy_kwh(total_kw, starts, ends)
    loads: list[dict[str, Any]] = []
    load_arrays: list[npt.NDArray[np.float64]] = []
    for load in layout.loads:
        if load.id in mains:
            continue
        members = [c for c in counted.values() if c.load_id == load.id]
        if not members or grid is None:
            continue
        kw = _sum((grid.values[c.id] * UNIT_TO_KILO[c.unit] for c in members), len(starts))
        kwh = energy_kwh(kw, starts, ends)
        load_arrays.append(kw)
        loads.append(
            {
                "id": load.id,
                "name": str(load.name),
                "kind": load.kind,
                "kw": _none(kw),
                "energy_kwh": kwh,
                "share": kwh / total_kwh if kwh is not None and total_kwh else None,
            }
        )
    if loads and mains and total_kwh:
        # What the main meter measured beyond the sub-meters: lighting, sockets, anything unmetered.
        rest = total_kw - _sum(
            (np.array([np.nan if v is None else v for v in load["kw"]]) for load in loads), len(starts)
        )
        rest_kwh = energy_kwh(rest, starts, ends)
        loads.append(
            {
                "id": None,
                "name": str(_("Not sub-metered")),
                "kind": "other",
                "kw": _none(rest),
                "energy_kwh": rest_kwh,
                "share": rest_kwh / total_kwh if rest_kwh is not None else None,
            }
        )
    answer: dict[str, Any] = {
        "range": period.range,
        "resolution": period.resolution,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "timezone": layout.timezone,
        "t": starts.tolist(),
        "ends": ends.tolist(),
        "channels": [
            {
                "id": c.id,
                "name": c.name,
                "quantity": c.quantity,
                "unit": c.unit,
                "load_id": c.load_id,
                "values": _none(grid.values[c.id]) if grid else [],
            }
            for c in charted
        ],
        "total_kw": _none(total_kw),
        "energy_kwh": total_kwh,
        "loads": loads,
        "compare": None,
    }
    if compare:
        other = period_compared(period, compare=compare)
        before = layout_totals(access=access, layout=layout, period=other)
        answer["compare"] = {
            "kind": compare,
            "start": other.start.isoformat(),
            "end": other.end.isoformat(),
            "t": before.starts_ms.tolist(),
            "shift_ms": period.start_ms - other.start_ms,
            "total_kw": _none(before.kw),
            "energy_kwh": before.kwh,
            "diff_kwh": None if total_kwh is None or before.kwh is None else total_kwh - before.kwh,
            "diff_pct": _percent(total_kwh, before.kwh),
        }
    return answer


# --- Device status history ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusRun:
    """A stretch of time in which a device reported (readings in every 15 minutes) or was silent."""

    start: datetime
    end: datetime
    reporting: bool


STATUS_RUNS_SHOWN = 20


def device_status_history(*, access: Access, layout: LiveLayout, period: Period) -> list[StatusRun]:
    """When the device reported over the period, newest first, from its 15-minute reading counts."""
    if not layout.channels:
        return []
    channel = layout.channels[0]
    grid = channel_grid(access=access, channel_ids=[channel.id], period=period, resolution="15m", aggregate="count")
    tz = layout.tz
    reported = {
        int(start) for start, n in zip(grid.starts_ms.tolist(), grid.values[channel.id].tolist(), strict=True) if n > 0
    }
    now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    runs: list[StatusRun] = []
    edge = period.start_ms
    last = min(period.end_ms, now_ms - now_ms % QUARTER_MS + QUARTER_MS)
    state: bool | None = None
    run_start = edge
    for at in range(edge, last, QUARTER_MS):
        here = at in reported
        if state is None:
            state = here
        elif here != state:
            runs.append(StatusRun(start=_local(run_start, tz), end=_local(at, tz), reporting=state))
            run_start, state = at, here
    if state is not None:
        runs.append(StatusRun(start=_local(run_start, tz), end=_local(last, tz), reporting=state))
    return runs[::-1][:STATUS_RUNS_SHOWN]


def _local(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz)


# --- Carpet plot ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Carpet:
    """15-minute demand (kW) per local day (rows) and time of day (96 columns); NaN where unknown."""

    days: list[date]
    kw: npt.NDArray[np.float64]  # shape (len(days), 96)

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "slots": SLOTS_PER_DAY,
            "kw": _none(self.kw.ravel()),
        }


def _slots(starts_ms: npt.NDArray[np.int64], tz: ZoneInfo, edges: npt.NDArray[np.int64]) -> tuple[Any, Any]:
    """Row (local day) and column (local quarter of an hour) of each interval start."""
    rows = np.searchsorted(edges, starts_ms, side="right") - 1
    offsets = np.array(
        [int(datetime.fromtimestamp(int(e) / 1000, tz=UTC).astimezone(tz).utcoffset().total_seconds()) for e in edges],  # type: ignore[union-attr]
        dtype=np.int64,
    )
    # Within a day the offset is the midnight's, except on a DST day after the switch: those days
    # (where the next midnight's offset differs) are placed by each interval's own local time.
    columns = (starts_ms - edges[rows]) // QUARTER_MS
    changed = np.nonzero(offsets[:-1] != offsets[1:])[0]
    for day in changed:
        mask = rows == day
        for i in np.nonzero(mask)[0]:
            local = datetime.fromtimestamp(int(starts_ms[i]) / 1000, tz=UTC).astimezone(tz)
            columns[i] = local.hour * 4 + local.minute // 15
    return rows, columns


def layout_carpet(*, access: Access, layout: LiveLayout, period: Period) -> Carpet:
    """The total's 15-minute averages over the period, days × time of day (at most CARPET_MAX_DAYS)."""
    if (period.last_day - period.first_day).days + 1 > CARPET_MAX_DAYS:
        raise AnalysisError(_("The carpet plot shows at most a year; choose a shorter period."))
    totals = layout_totals(access=access, layout=layout, period=period, resolution="15m")
    tz = layout.tz
    edges = interval_edges("1d", tz, period.start_ms, period.end_ms)
    edges = edges[(edges >= period.start_ms) & (edges <= period.end_ms)]
    days = [period.start.date() + timedelta(days=i) for i in range(len(edges) - 1)]
    kw = np.full((len(days), SLOTS_PER_DAY), np.nan)
    if len(totals.starts_ms):
        rows, columns = _slots(totals.starts_ms, tz, edges)
        keep = (rows >= 0) & (rows < len(days)) & (columns < SLOTS_PER_DAY) & ~np.isnan(totals.kw)
        kw[rows[keep], columns[keep]] = totals.kw[keep]
    return Carpet(days=days, kw=kw)


# --- Park benchmark ---------------------------------------------------------------------------


def opening_mask(
    starts_ms: npt.NDArray[np.int64], tz: ZoneInfo, hours: dict[str, list[list[str]]]
) -> npt.NDArray[np.bool_]:
    """Whether each interval starts inside the facility's opening hours (local time)."""
    open_at = np.zeros(len(starts_ms), dtype=bool)
    for i, ms in enumerate(starts_ms.tolist()):
        local = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz)
        clock = f"{local.hour:02d}:{local.minute:02d}"
        for first, last in hours.get(WEEKDAYS[local.weekday()], []):
            if first <= clock < last:
                open_at[i] = True
                break
    return open_at


@dataclass(frozen=True, slots=True)
class Benchmark:
    facility: Facility
    month_kwh: float | None
    last_month_kwh: float | None
    kwh_per_day: float | None
    kwh_per_m2: float | None
    out_of_hours_share: float | None
    change_pct: float | None


BENCHMARK_SORTS = ("name", "kwh_per_m2", "kwh_per_day", "out_of_hours_share", "change_pct", "month_kwh")


def facility_benchmark(*, access: Access, layout: LiveLayout, facility: Facility, now: datetime) -> Benchmark:
    """This month so far against last month, per m², per day and outside opening hours."""
    tz = layout.tz
    month = period_resolve(range_name="month", tz=tz, now=now)
    month = Period(range="month", start=month.start, end=min(month.end, now.astimezone(tz)), resolution="15m")
    last = period_compared(period_resolve(range_name="month", tz=tz, now=now), compare="previous")
    this = (
        layout_totals(access=access, layout=layout, period=month, resolution="15m") if month.end > month.start else None
    )
    before = layout_totals(access=access, layout=layout, period=last, resolution="15m")
    kwh = this.kwh if this else None
    per_day = per_m2 = share = None
    if this is not None and kwh is not None:
        days = (month.end - month.start) / timedelta(days=1)
        per_day = kwh / days if days else None
        if facility.floor_area_m2:
            per_m2 = kwh / float(facility.floor_area_m2)
        if facility.opening_hours and kwh:
            hours = (this.ends_ms - this.starts_ms) / HOUR_MS
            outside = ~opening_mask(this.starts_ms, tz, facility.opening_hours)
            share = float(np.nansum((this.kw * hours)[outside])) / kwh
    return Benchmark(
        facility=facility,
        month_kwh=kwh,
        last_month_kwh=before.kwh,
        kwh_per_day=per_day,
        kwh_per_m2=per_m2,
        out_of_hours_share=share,
        change_pct=_percent(kwh, before.kwh),
    )


def park_benchmark(
    *, access: Access, layouts: dict[int, LiveLayout], facilities: Sequence[Facility], now: datetime, sort: str = "name"
) -> list[Benchmark]:
    """One benchmark per facility, ranked by `sort` (highest first; facilities without a figure last)."""
    if sort not in BENCHMARK_SORTS:
        raise AnalysisError(_("Rank by one of: %(sorts)s.") % {"sorts": ", ".join(BENCHMARK_SORTS)})
    rows = [
        facility_benchmark(access=access, layout=layouts[f.pk], facility=f, now=now)
        for f in facilities
        if f.pk in layouts
    ]
    if sort == "name":
        return rows
    present = [r for r in rows if getattr(r, sort) is not None]
    missing = [r for r in rows if getattr(r, sort) is None]
    return sorted(present, key=lambda r: getattr(r, sort), reverse=True) + missing
