"""Reads of billing: tariffs, contracts, bills, and a facility's month computed from the 15-minute rollups.

A facility's 15-minute energy on the full calendar grid, main meter and submeters (`facility_usage`),
is `readings.demand`'s rule: the one the dashboard and the alert rules read through
`readings.selectors.readings_facility_demand`.
"""

from __future__ import annotations

import calendar as pycalendar
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_calendars
import numpy as np
from django.db.models import Exists, OuterRef, QuerySet, Subquery

from accounts.access import Access
from accounts.models import Role
from billing.calculation import (
    INTERVAL_MS,
    AllocationInput,
    BillResult,
    History,
    MonthPeak,
    Segment,
    Terms,
    Usage,
    compute_bill,
)
from billing.errors import BillingError
from billing.models import (
    Bill,
    BillingProfile,
    Contract,
    CostCentre,
    DemandInterval,
    FacilityPeak,
    FixedChargeKey,
    Tariff,
    TariffVersion,
)
from devices.models import Channel, Facility, Load
from devices.quantities import Quantity
from devices.selectors import facility_list
from readings.demand import (
    NO_METERING,
    Metering,
    ModelQuery,
    Quarters,
    channels_kwh,
    facilities_metering,
    facility_quarters,
    loads_by_interval,
    metering_query,
    meterings_from,
    models_from_sqls,
    quarters_of,
)
from readings.models import Resolution as ResolutionLevel
from readings.rollups import interval_edges
from readings.store import get_store

logger = logging.getLogger(__name__)


# --- Tariffs, contracts, bills ----------------------------------------------------------------


def tariff_list(*, access: Access) -> QuerySet[Tariff]:
    return Tariff.objects.filter(tenant_id=access.tenant_id).prefetch_related("versions")


def tariff_get(*, access: Access, tariff_id: int) -> Tariff:
    return tariff_list(access=access).get(pk=tariff_id)


def contract_list(*, access: Access) -> QuerySet[Contract]:
    qs = Contract.objects.filter(tenant_id=access.tenant_id).select_related("facility", "tariff")
    if access.facility_ids is not None:
        qs = qs.filter(facility_id__in=access.facility_ids)
    return qs


def bill_list(*, access: Access) -> QuerySet[Bill]:
    qs = Bill.objects.filter(tenant_id=access.tenant_id).select_related("facility")
    if access.facility_ids is not None:
        # A facility manager sees the bills of granted facilities, never the client's sum.
        qs = qs.filter(facility_id__in=access.facility_ids)
    return qs


def bill_get(*, access: Access, bill_id: int) -> Bill:
    return bill_list(access=access).prefetch_related("lines").get(pk=bill_id)


def bill_latest(*, access: Access, facility_id: int | None, year: int, month: int) -> Bill | None:
    qs = bill_list(access=access).filter(year=year, month=month)
    qs = qs.filter(facility__isnull=True) if facility_id is None else qs.filter(facility_id=facility_id)
    return qs.order_by("-version").first()


def cost_centre_list(*, access: Access) -> QuerySet[CostCentre]:
    return CostCentre.objects.filter(tenant_id=access.tenant_id).prefetch_related("loads")


def billing_profile(*, tenant_id: int) -> BillingProfile:
    return BillingProfile.objects.filter(tenant_id=tenant_id).first() or BillingProfile(tenant_id=tenant_id)


# --- Months in a facility's time zone ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int
    tz: ZoneInfo

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def days(self) -> int:
        return pycalendar.monthrange(self.year, self.month)[1]

    @property
    def year_days(self) -> int:
        return 366 if pycalendar.isleap(self.year) else 365

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, self.days)

    def midnight_ms(self, day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp() * 1000)

    @property
    def start_ms(self) -> int:
        return self.midnight_ms(self.first_day)

    @property
    def end_ms(self) -> int:
        return self.midnight_ms(self.last_day + timedelta(days=1))

    def previous(self) -> Month:
        return Month(self.year - 1, 12, self.tz) if self.month == 1 else Month(self.year, self.month - 1, self.tz)

    def __str__(self) -> str:
        return f"{self.year}-{self.month:02d}"


def parse_month(raw: str) -> tuple[int, int]:
    try:
        year, month = (int(part) for part in raw.strip().split("-"))
    except (ValueError, AttributeError) as exc:
        raise BillingError(f"{raw!r} is not a month such as 2026-11.") from exc
    if not (2000 <= year <= 2200 and 1 <= month <= 12):
        raise BillingError(f"{raw!r} is not a month such as 2026-11.")
    return year, month


def month_check(*, month: Month, now_ms: int) -> None:
    if month.start_ms > now_ms:
        raise BillingError(f"{month} has not begun in the facility's time zone; there is nothing to bill yet.")


@lru_cache(maxsize=512)
def holiday_dates(region: str, year: int) -> tuple[date, ...]:
    if not region:
        return ()
    country, _, subdivision = region.upper().partition("-")
    try:
        calendar = holiday_calendars.country_holidays(country, subdiv=subdivision or None, years=year)
    except NotImplementedError:
        logger.warning("no holiday calendar for region %r", region)
        return ()
    return tuple(sorted(calendar))


# --- A facility's 15-minute energy -----------------------------------------------------------


def facility_metering(*, facility: Facility) -> Metering:
    return facilities_metering(facility_ids=[facility.pk]).get(facility.pk, NO_METERING)


def _channels(metering: Metering) -> list[Channel]:
    return metering.channels


def _usage(
    metering: Metering,
    kwh: dict[int, np.ndarray],
    edges: np.ndarray,
    loads_at: dict[int, np.ndarray],
    flags: dict[int, np.ndarray] | None = None,
) -> Usage:
    """Main meter and per-load kWh per interval: `readings.demand`'s rule, the one of bills, the stored
    demand and peaks, the dashboard and the alert rules. With `flags`, `Usage.estimated` marks the
    intervals where a channel the main meter counts carries ESTIMATED (a gap's energy spread)."""
    return _as_usage(quarters_of(metering, kwh, edges, loads_at, flags))


def _as_usage(quarters: Quarters) -> Usage:
    return Usage(starts_ms=quarters.starts_ms, kwh=quarters.kwh, loads=quarters.loads, estimated=quarters.estimated)


def facility_usage(*, access: Access, facility: Facility, start_ms: int, end_ms: int, metering: Metering) -> Usage:
    """The facility's kWh per 15-minute interval over [start_ms, end_ms), main meter and each load."""
    return _as_usage(
        facility_quarters(
            access=access, timezone=facility.timezone, start_ms=start_ms, end_ms=end_ms, metering=metering
        )
    )


# --- The stored 15-minute demand and peaks --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Demand:
    """A facility's 15-minute demand (kW = interval kWh × 4) on the UTC 15-minute grid; NaN where unmeasured."""

    starts_ms: np.ndarray
    kw: np.ndarray
    estimated: np.ndarray  # bool: part of the interval's energy is a gap's spread share


def demand_channels(*, facility_ids: Sequence[int]) -> dict[int, list[int]]:
    """Per facility, its energy and power channels (sorted ids): what its stored demand is computed from."""
    found: dict[int, list[int]] = defaultdict(list)
    rows = Channel.objects.filter(
        device__facility_id__in=list(facility_ids), quantity__in=(Quantity.ACTIVE_ENERGY, Quantity.ACTIVE_POWER)
    ).values_list("device__facility_id", "pk")
    for facility_id, channel_id in rows.order_by("pk"):
        found[facility_id].append(channel_id)
    return found


def demand_compute(
    *, facility: Facility, channel_ids: Sequence[int], start_ms: int | None, end_ms: int | None
) -> Demand:
    """The facility's 15-minute demand over [start_ms, end_ms), or over all its rollups when a bound is None.

    It is the bills' rule (`facility_usage`, `_usage`), so a bill's own peak and the stored one never
    differ: the main meter (its mains load, else every load), per device and load from the energy
    counters in each interval where they have data (energy × 4), else the mean power; `estimated` where
    a counted interval's flags carry ESTIMATED (a gap's spread share).
    """
    empty = Demand(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=bool))
    if not channel_ids:
        return empty
    if start_ms is None or end_ms is None:
        # 15-minute rollups lie on the UTC quarter-hour grid in every zone, so the grid is their own span.
        found = get_store().read_rollups(
            tenant_id=facility.tenant_id,
            channel_ids=list(channel_ids),
            resolution=int(ResolutionLevel.M15),
            start_ms=0,
            end_ms=2**62,
            fields=("end_ms",),
        )
        blocks = [b for b in found.values() if len(b)]
        if not blocks:
            return empty
        start_ms = min(int(b.columns["start_ms"][0]) for b in blocks)
        end_ms = max(int(b.columns["end_ms"][-1]) for b in blocks)
    start_ms -= start_ms % INTERVAL_MS
    end_ms += -end_ms % INTERVAL_MS
    if end_ms <= start_ms:
        return empty
    access = Access(tenant_id=facility.tenant_id, role=Role.ADMIN, facility_ids=None)  # a worker's, tenant-wide
    usage = facility_usage(
        access=access,
        facility=facility,
        start_ms=start_ms,
        end_ms=end_ms,
        metering=facility_metering(facility=facility),
    )
    estimated = usage.estimated if usage.estimated is not None else np.zeros(len(usage.kwh), dtype=bool)
    return Demand(usage.starts_ms, usage.kwh * 4, estimated)


def _settle(facility_ids: Sequence[int]) -> None:
    # Reads settle the facility's due intervals first, so a page or an answer never shows a peak the
    # rollups have already moved past; the beat task (`billing.demand_settle`) does it for all others.
    from billing.services import demand_settle

    demand_settle(facility_ids=facility_ids)


def demand_stored(*, facility: Facility, start_ms: int, end_ms: int) -> Demand:
    """The stored demand of the facility's intervals starting in [start_ms, end_ms), on the full grid."""
    _settle([facility.pk])
    starts = np.arange(start_ms - start_ms % INTERVAL_MS, end_ms, INTERVAL_MS, dtype=np.int64)
    kw = np.full(len(starts), np.nan)
    estimated = np.zeros(len(starts), dtype=bool)
    rows = DemandInterval.objects.filter(
        facility_id=facility.pk,
        start__gte=datetime.fromtimestamp(int(starts[0]) / 1000, tz=UTC) if len(starts) else None,
        start__lt=datetime.fromtimestamp(end_ms / 1000, tz=UTC),
    ).values_list("start", "kw", "estimated")
    for start, value, flag in rows:
        cell = (int(start.timestamp() * 1000) - int(starts[0])) // INTERVAL_MS
        kw[cell] = value
        estimated[cell] = flag
    return Demand(starts, kw, estimated)


@dataclass(frozen=True, slots=True)
class StoredPeak:
    year: int
    month: int  # 0: the whole year
    kw: float
    start_ms: int
    estimated: bool
    energy_kwh: float


def peaks_stored(*, facility: Facility, year: int, settle: bool = True) -> dict[int, StoredPeak]:
    """The facility's stored peaks of a year in its zone, by month (0: the year's own)."""
    if settle:
        _settle([facility.pk])
    return {
        p.month: StoredPeak(p.year, p.month, p.kw, int(p.interval_start.timestamp() * 1000), p.estimated, p.energy_kwh)
        for p in FacilityPeak.objects.filter(facility_id=facility.pk, year=year)
    }


# --- Tariff segments of a month ---------------------------------------------------------------


def terms_of(version: TariffVersion, tariff: Tariff) -> Terms:
    return Terms(
        version_id=version.pk,
        tariff_name=tariff.name,
        currency=tariff.currency,
        energy_rates=tuple(float(r) for r in version.energy_rates),
        schedules={
            "weekday": version.weekday_schedule,
            "weekend": version.weekend_schedule,
            "holiday": version.holiday_schedule,
        },
        tiers=tuple((t["up_to_kwh"], float(t["adder"])) for t in version.energy_tiers),
        demand_mode=version.demand_mode,
        demand_price=float(version.demand_price),
        demand_windows=version.demand_windows or {},
        ratchet_percent=float(version.ratchet_percent),
        ratchet_months=version.ratchet_months,
        utilisation_split_hours=float(version.utilisation_split_hours),
        low_use_demand_price=float(version.low_use_demand_price),
        low_use_energy_price=float(version.low_use_energy_price),
        high_use_demand_price=float(version.high_use_demand_price),
        high_use_energy_price=float(version.high_use_energy_price),
        fixed_per_day=float(version.fixed_per_day),
        fixed_per_month=float(version.fixed_per_month),
        fixed_per_meter_month=float(version.fixed_per_meter_month),
        levies=tuple((levy["name"], float(levy["per_kwh"])) for levy in version.levies),
        vat_percent=float(version.vat_percent),
    )


def _as_date(value: date | str | None) -> date | None:
    """A raw query's date column: a date from PostgreSQL, ISO text from SQLite."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def month_segments(*, facility: Facility, month: Month) -> list[Segment]:
    return months_segments(months={facility.pk: month}).get(facility.pk, [])


def months_segments(*, months: dict[int, Month]) -> dict[int, list[Segment]]:
    """Per facility, the parts of its month priced by one tariff version each: contracts cut by
    their tariff's versions. One query: each version of a contracted tariff, with the bounds of the
    contract it serves (the months may differ by time zone; they are filtered here)."""
    if not months:
        return {}
    first = min(m.first_day for m in months.values())
    last = max(m.last_day for m in months.values())
    return _segments_from(models_from_sqls([_segments_query(list(months), first, last)])[0], months)


def _segments_query(facility_ids: Sequence[int], first: date, last: date) -> ModelQuery:
    # In SQL for the reason of `facilities_metering` (the ORM's join took 1.8 of 3.5 ms per bill to compile), and
    # without the RawQuerySet (`readings.demand.models_from_sql`).
    version, tariff, contract = TariffVersion._meta.db_table, Tariff._meta.db_table, Contract._meta.db_table
    ids = [int(pk) for pk in facility_ids]
    return ModelQuery(
        TariffVersion,
        table_alias="v",
        select_tail=", t.name, t.currency, c.facility_id, c.valid_from, c.valid_to"  # noqa: S608 - names, not input
        f" FROM {version} v JOIN {tariff} t ON t.id = v.tariff_id JOIN {contract} c ON c.tariff_id = t.id"
        f" WHERE c.facility_id IN ({', '.join(['%s'] * len(ids))}) AND c.valid_from <= %s"
        " AND (c.valid_to IS NULL OR c.valid_to >= %s)"
        " AND v.valid_from <= %s AND (v.valid_to IS NULL OR v.valid_to >= %s)",
        params=[*ids, last, first, last, first],
        extra=("tariff_name", "tariff_currency", "contract_facility", "contract_from", "contract_to"),
    )


def _segments_from(rows: Sequence[TariffVersion], months: dict[int, Month]) -> dict[int, list[Segment]]:
    segments: dict[int, list[Segment]] = defaultdict(list)
    for version_row in rows:
        facility_id = version_row.contract_facility  # type: ignore[attr-defined]
        month = months[facility_id]
        contract_from = _as_date(version_row.contract_from) or month.first_day  # type: ignore[attr-defined]
        contract_to = _as_date(version_row.contract_to)  # type: ignore[attr-defined]
        lo = max(contract_from, version_row.valid_from, month.first_day)
        hi = min(contract_to or month.last_day, version_row.valid_to or month.last_day, month.last_day)
        if lo > hi:
            continue
        owner = Tariff(
            id=version_row.tariff_id,
            tenant_id=version_row.tenant_id,
            name=version_row.tariff_name,  # type: ignore[attr-defined]
            currency=version_row.tariff_currency,  # type: ignore[attr-defined]
        )
        segments[facility_id].append(
            Segment(
                start_ms=month.midnight_ms(lo),
                end_ms=month.midnight_ms(hi + timedelta(days=1)),
                days=(hi - lo).days + 1,
                terms=terms_of(version_row, owner),
            )
        )
    return {facility_id: sorted(parts, key=lambda part: part.start_ms) for facility_id, parts in segments.items()}


# --- Bills --------------------------------------------------------------------------------------


def _month_peak(usage: Usage, segments: Sequence[Segment], tz: ZoneInfo, region: str, year: int) -> float:
    if not segments:
        return float(np.nanmax(usage.kwh) * 4) if len(usage.kwh) and not np.isnan(usage.kwh).all() else 0.0
    result = compute_bill(
        usage=Usage(usage.starts_ms, usage.kwh),
        segments=segments,
        tz=tz,
        holidays=holiday_dates(region, year),
        month_days=31,
        year_days=365,
        meters=0,
    )
    return result.peak_kw or 0.0


def _plain_month(month: Month, segments: Sequence[Segment]) -> bool:
    """The month's peak is its stored peak: no tariff part limits it to demand windows or to part of the month."""
    if not segments:
        return True
    covered = sum(seg.end_ms - seg.start_ms for seg in segments) == month.end_ms - month.start_ms
    return covered and not any(seg.terms.demand_windows for seg in segments)


def _history(*, access: Access, facility: Facility, month: Month, metering: Metering, terms: Terms) -> History:
    """Earlier months' peaks (inside each month's own demand windows) and this year's kWh before the month.

    Months whose peak is the plain highest 15-minute demand take it, and their kWh, from the stored peaks;
    the others (demand windows, a contract over part of the month) are computed from their rollups.
    """
    if terms.demand_mode not in ("annual", "utilisation", "ratchet"):
        return History()
    back = month.month - 1 if terms.demand_mode != "ratchet" else terms.ratchet_months
    months: list[Month] = []
    cursor = month
    for _ in range(back):
        cursor = cursor.previous()
        months.append(cursor)
    if not months:
        return History()
    segments = {m: month_segments(facility=facility, month=m) for m in months}
    stored: dict[tuple[int, int], StoredPeak] = {}
    for year in sorted({m.year for m in months}):
        stored.update(
            {(year, number): p for number, p in peaks_stored(facility=facility, year=year).items() if number >= 1}
        )
    usage: Usage | None = None
    earlier: list[MonthPeak] = []
    ratchet: list[float] = []
    year_kwh = 0.0
    for m in months:
        if _plain_month(m, segments[m]):
            found = stored.get((m.year, m.month))
            if found is None:
                continue  # no data that month
            peak, kwh = found.kw, found.energy_kwh
        else:
            if usage is None:
                usage = facility_usage(
                    access=access,
                    facility=facility,
                    start_ms=months[-1].start_ms,
                    end_ms=month.start_ms,
                    metering=metering,
                )
            inside = (usage.starts_ms >= m.start_ms) & (usage.starts_ms < m.end_ms)
            part = Usage(usage.starts_ms[inside], usage.kwh[inside])
            if np.isnan(part.kwh).all():
                continue
            peak = _month_peak(part, segments[m], month.tz, facility.holiday_region, m.year)
            kwh = float(np.nansum(part.kwh))
        if m.year == month.year:
            earlier.append(MonthPeak(m.year, m.month, peak, m.days))
            year_kwh += kwh
        ratchet.append(peak)
    return History(earlier_peaks=tuple(earlier), ratchet_peaks=tuple(ratchet), year_kwh_before=year_kwh)


@dataclass(frozen=True, slots=True)
class ComputedBill:
    facility: Facility
    month: Month
    result: BillResult
    segments: tuple[Segment, ...]
    draft: bool
    usage: Usage


def _billable(access: Access) -> QuerySet[Facility]:
    return facility_list(access=access).annotate(
        fixed_key=Subquery(
            BillingProfile.objects.filter(tenant_id=OuterRef("tenant_id")).values("fixed_charge_key")[:1]
        ),
        # Most tenants have no cost centres: then the allocation needs no query for them.
        has_centres=Exists(CostCentre.objects.filter(tenant_id=OuterRef("tenant_id"))),
    )


def bill_compute(*, access: Access, facility_id: int, year: int, month: int, now_ms: int | None = None) -> ComputedBill:
    """A facility's bill for a calendar month in its time zone, from the 15-minute rollups.

    The running month is a draft up to now, with a projection to month end; a future month is refused.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if access.facility_ids is not None and int(facility_id) not in access.facility_ids:
        raise Facility.DoesNotExist("Facility matching query does not exist.")
    # The facility, its tariff versions and its channels in one round trip; the last two are used only
    # once the first has found the facility within the tenant.
    found, versions, channels = models_from_sqls(
        [
            _billable_query(access, facility_id),
            _segments_query(
                [facility_id], date(year, month, 1), date(year, month, pycalendar.monthrange(year, month)[1])
            ),
            metering_query([facility_id]),
        ]
    )
    if not found:
        raise Facility.DoesNotExist("Facility matching query does not exist.")
    facility = found[0]
    period = Month(year, month, ZoneInfo(facility.timezone))
    return _bill(
        access=access,
        facility=facility,
        year=year,
        month=month,
        now_ms=now_ms,
        segments=_segments_from(versions, {facility.pk: period}).get(facility.pk, []),
        metering=meterings_from(channels).get(facility.pk, NO_METERING),
    )


def _billable_query(access: Access, facility_id: int) -> ModelQuery:
    """`_billable(access).get(pk=facility_id)` in SQL, for the reason of `facilities_metering` (compiling the
    ORM's two subqueries took 1.3 ms per bill); no row when it is out of reach."""
    facility, profile, centre = Facility._meta.db_table, BillingProfile._meta.db_table, CostCentre._meta.db_table
    return ModelQuery(
        Facility,
        table_alias="f",
        select_tail=f", (SELECT p.fixed_charge_key FROM {profile} p WHERE p.tenant_id = f.tenant_id"  # noqa: S608 - names, not input
        f" ORDER BY p.id LIMIT 1),"
        f" EXISTS (SELECT 1 FROM {centre} x WHERE x.tenant_id = f.tenant_id)"
        f" FROM {facility} f WHERE f.tenant_id = %s AND f.id = %s",
        params=[access.tenant_id, int(facility_id)],
        extra=("fixed_key", "has_centres"),
    )


def _billed_until(period: Month, now_ms: int) -> int:
    end_ms = min(period.end_ms, now_ms)
    return max(end_ms - end_ms % INTERVAL_MS, period.start_ms + INTERVAL_MS)


def _bill(
    *,
    access: Access,
    facility: Facility,
    year: int,
    month: int,
    now_ms: int,
    segments: list[Segment] | None = None,
    metering: Metering | None = None,
    usage: Usage | None = None,
) -> ComputedBill:
    """The bill of a facility from `_billable`; the batch (`client_month`) passes what it read for many."""
    tz = ZoneInfo(facility.timezone)
    period = Month(year, month, tz)
    month_check(month=period, now_ms=now_ms)
    draft = now_ms < period.end_ms
    if segments is None:
        segments = month_segments(facility=facility, month=period)
    if not segments:
        raise BillingError(f"{facility.name} has no contract covering {period}.")
    if metering is None:
        metering = facility_metering(facility=facility)
    end_ms = _billed_until(period, now_ms)
    if usage is None:
        usage = facility_usage(
            access=access, facility=facility, start_ms=period.start_ms, end_ms=end_ms, metering=metering
        )
    names = {c.load_id: c.load.name for cs in metering.loads.values() for c in cs if c.load_id and c.load}
    if set(usage.loads) - set(names):  # a load a channel fed earlier in the month, none feeds now
        names.update(Load.objects.filter(pk__in=set(usage.loads) - set(names)).values_list("pk", "name"))
    centres: dict[int, tuple[str, float, int]] = {}  # load -> (cost centre, its area, its loads here)
    rows = []
    if facility.has_centres:  # type: ignore[attr-defined]
        rows = list(
            CostCentre.objects.filter(tenant_id=facility.tenant_id, loads__in=list(usage.loads)).values_list(
                "pk", "name", "area_m2", "loads"
            )
        )
    members: dict[int, int] = defaultdict(int)
    for pk, _, _, _ in rows:
        members[pk] += 1
    for pk, name, area, load_id in rows:
        centres.setdefault(load_id, (name, float(area), members[pk]))
    allocation = AllocationInput(
        key=facility.fixed_key or FixedChargeKey.KWH,  # type: ignore[attr-defined]
        names=names,
        cost_centres={lid: centre[0] for lid, centre in centres.items()},
        areas={lid: area / count for lid, (_, area, count) in centres.items()},
    )
    result = compute_bill(
        usage=usage,
        segments=segments,
        tz=tz,
        holidays=holiday_dates(facility.holiday_region, year),
        month_days=period.days,
        year_days=period.year_days,
        meters=metering.meters,
        history=_history(access=access, facility=facility, month=period, metering=metering, terms=segments[0].terms),
        allocation=allocation,
        elapsed_fraction=(end_ms - period.start_ms) / (period.end_ms - period.start_ms) if draft else None,
    )
    return ComputedBill(facility, period, result, tuple(segments), draft, usage)


# --- Peaks --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeakRow:
    start_ms: int
    kw: float
    loads: list[tuple[str, float]]  # the loads' kW in that interval, largest first
    estimated: bool = False  # part of the interval's energy is a gap's spread share


@dataclass(frozen=True, slots=True)
class PeakReport:
    facility: Facility
    month: Month
    curve_starts_ms: list[int]
    curve_kw: list[float | None]
    top: list[PeakRow]
    month_peak: PeakRow | None
    year_peak: tuple[int, float] | None  # (interval start, kW), January up to this month
    target_kw: float | None
    year_peak_estimated: bool = False


def peaks_report(*, access: Access, facility_id: int, year: int, month: int, now_ms: int | None = None) -> PeakReport:
    """The month's 15-minute demand curve, its top 10 intervals with the loads that made them, and the year's
    peak, from the stored demand and peaks (`DemandInterval`, `FacilityPeak`); the loads' shares of the top
    intervals come from their rollups."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    facility = facility_list(access=access).get(pk=facility_id)
    tz = ZoneInfo(facility.timezone)
    period = Month(year, month, tz)
    month_check(month=period, now_ms=now_ms)
    end_ms = min(period.end_ms, now_ms - now_ms % INTERVAL_MS)
    end_ms = max(end_ms, period.start_ms + INTERVAL_MS)
    demand = demand_stored(facility=facility, start_ms=period.start_ms, end_ms=end_ms)
    month_demand = np.where(np.isfinite(demand.kw), demand.kw, -np.inf)
    order = [int(i) for i in np.argsort(-month_demand, kind="stable")[:10] if np.isfinite(month_demand[i])]
    shares: dict[int, list[tuple[str, float]]] = {}
    if order:
        metering = facility_metering(facility=facility)
        usage = facility_usage(
            access=access, facility=facility, start_ms=period.start_ms, end_ms=end_ms, metering=metering
        )
        names = dict(Load.objects.filter(pk__in=list(usage.loads)).values_list("pk", "name"))
        cell = {int(start): i for i, start in enumerate(usage.starts_ms.tolist())}
        for i in order:
            at = cell.get(int(demand.starts_ms[i]))
            found = (
                []
                if at is None
                else [(names.get(lid, str(lid)), float(kwh[at] * 4)) for lid, kwh in usage.loads.items()]
            )
            shares[i] = sorted([(n, kw) for n, kw in found if np.isfinite(kw)], key=lambda c: -c[1])

    def row(index: int) -> PeakRow:
        return PeakRow(
            int(demand.starts_ms[index]), float(demand.kw[index]), shares[index], bool(demand.estimated[index])
        )

    # The year's peak up to this month: the stored peaks of its earlier months, and this month's as shown.
    candidates = [
        (p.kw, -p.start_ms, p.estimated)
        for p in peaks_stored(facility=facility, year=year, settle=False).values()
        if 1 <= p.month < month
    ]
    if order:
        candidates.append(
            (float(demand.kw[order[0]]), -int(demand.starts_ms[order[0]]), bool(demand.estimated[order[0]]))
        )
    best = max(candidates) if candidates else None
    return PeakReport(
        facility=facility,
        month=period,
        curve_starts_ms=demand.starts_ms.tolist(),
        curve_kw=[None if not np.isfinite(v) else float(v) for v in demand.kw],
        top=[row(i) for i in order],
        month_peak=row(order[0]) if order else None,
        year_peak=(-best[1], best[0]) if best else None,
        target_kw=float(facility.peak_target_kw) if facility.peak_target_kw is not None else None,
        year_peak_estimated=bool(best[2]) if best else False,
    )


def month_peak_stored(*, access: Access, facility: Facility, now_ms: int) -> StoredPeak | None:
    """The highest stored 15-minute demand of the facility's running month before the running quarter
    (the dashboard's month peak; the running quarter is the live projection's)."""
    tz = ZoneInfo(facility.timezone)
    local = datetime.fromtimestamp(now_ms / 1000, tz=tz)
    period = Month(local.year, local.month, tz)
    current = now_ms - now_ms % INTERVAL_MS
    if current <= period.start_ms or not access.sees_facility(facility.pk):
        return None
    _settle([facility.pk])
    top = (
        DemandInterval.objects.filter(
            facility_id=facility.pk,
            start__gte=datetime.fromtimestamp(period.start_ms / 1000, tz=UTC),
            start__lt=datetime.fromtimestamp(current / 1000, tz=UTC),
        )
        .order_by("-kw", "start")
        .first()
    )
    if top is None:
        return None
    return StoredPeak(period.year, period.month, top.kw, int(top.start.timestamp() * 1000), top.estimated, 0.0)


# The channels read from the store in one go by `client_month`.
BATCH_CHANNELS = 300


def client_month(*, access: Access, year: int, month: int, now_ms: int) -> list[Bill | ComputedBill]:
    """Each facility's month for the client: its latest issued bill, else the bill computed now.

    Facilities without a contract in the month are left out; a month that has not begun is refused.
    The facilities to compute share their queries: one for the channels, one for the tariff
    segments, and one store read per few hundred channels of the same time zone.
    """
    issued: dict[int, Bill] = {}
    for bill in (
        bill_list(access=access).filter(year=year, month=month, facility__isnull=False).prefetch_related("lines")
    ):
        if bill.facility_id not in issued or bill.version > issued[bill.facility_id].version:
            issued[bill.facility_id] = bill  # type: ignore[index]
    facilities = list(_billable(access).filter(contracts__isnull=False).distinct().order_by("name"))
    periods = {f.pk: Month(year, month, ZoneInfo(f.timezone)) for f in facilities}
    if facilities and all(p.start_ms > now_ms for p in periods.values()):
        raise BillingError(f"{year}-{month:02d} has not begun; there is nothing to bill yet.")
    todo = [f for f in facilities if f.pk not in issued and periods[f.pk].start_ms <= now_ms]
    segments = months_segments(months={f.pk: periods[f.pk] for f in todo})
    meterings = facilities_metering(facility_ids=[f.pk for f in todo])
    usages: dict[int, Usage] = {}
    by_zone: dict[tuple[str, int, int], list[Facility]] = defaultdict(list)
    for f in todo:
        period = periods[f.pk]
        by_zone[(f.timezone, period.start_ms, _billed_until(period, now_ms))].append(f)
    for (zone, start_ms, end_ms), group in by_zone.items():
        edges = interval_edges("15m", ZoneInfo(zone), start_ms, end_ms)
        chunks: list[list[Facility]] = [[]]
        size = 0
        for f in group:
            count = len(_channels(meterings.get(f.pk, NO_METERING)))
            if chunks[-1] and size + count > BATCH_CHANNELS:
                chunks.append([])
                size = 0
            chunks[-1].append(f)
            size += count
        for chunk in chunks:
            channels = [c for g in chunk for c in _channels(meterings.get(g.pk, NO_METERING))]
            flags: dict[int, np.ndarray] = {}
            kwh = channels_kwh(access=access, channels=channels, edges=edges, flags=flags)
            allocated = frozenset().union(*(meterings.get(g.pk, NO_METERING).allocated for g in chunk))
            loads_at = loads_by_interval(
                access=access, channels=[c for c in channels if c.pk in allocated], edges=edges
            )
            for g in chunk:
                usages[g.pk] = _usage(meterings.get(g.pk, NO_METERING), kwh, edges, loads_at, flags)
    rows: list[Bill | ComputedBill] = []
    for facility in facilities:
        if facility.pk in issued:
            rows.append(issued[facility.pk])
        elif facility.pk in usages:
            try:
                rows.append(
                    _bill(
                        access=access,
                        facility=facility,
                        year=year,
                        month=month,
                        now_ms=now_ms,
                        segments=segments.get(facility.pk, []),
                        metering=meterings.get(facility.pk, NO_METERING),
                        usage=usages[facility.pk],
                    )
                )
            except BillingError:
                continue
    return rows
