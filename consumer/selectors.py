"""Reads the consumer app needs on top of the domains: who the user is, and a facility's cost per interval.

The cost of an interval is priced by the billing service, never here: the energy-dependent part
(energy, tiers and levies, with VAT) of the facility's draft bill up to the interval's end, minus
the same up to its start, both within the interval's month. Fixed and demand charges are monthly
and appear on the bill, not in the series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Q, QuerySet

from accounts.access import Access
from accounts.models import Membership, User
from accounts.selectors import membership_list
from billing.calculation import DAY_TYPES
from billing.errors import BillingError
from billing.models import Contract
from billing.selectors import Month, bill_compute
from devices.models import Facility
from devices.selectors import facility_get, facility_list

ENERGY_LINES = frozenset({"energy", "levy"})
RESOLUTIONS = ("1h", "1d", "1mo")
MAX_INTERVALS = 400


@dataclass(frozen=True, slots=True)
class Me:
    user: User
    memberships: QuerySet[Membership]
    facilities: QuerySet[Facility]
    tenant_id: int


def me_get(*, access: Access, user: User) -> Me:
    return Me(
        user=user,
        memberships=membership_list(user=user),
        facilities=facility_list(access=access).order_by("name"),
        tenant_id=access.tenant_id,
    )


@dataclass(frozen=True, slots=True)
class CostPoint:
    start: datetime
    end: datetime
    cost: Decimal | None  # None: the interval lies ahead, or no tariff covers it


@dataclass(frozen=True, slots=True)
class CostSeries:
    facility_id: int
    timezone: str
    currency: str
    resolution: str
    points: list[CostPoint]


def _edges(*, start: datetime, end: datetime, resolution: str, tz: ZoneInfo) -> list[datetime]:
    local = start.astimezone(tz)
    step: Callable[[datetime], datetime]
    if resolution == "1h":
        at = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)

        def step(moment: datetime) -> datetime:
            return moment + timedelta(hours=1)

    elif resolution == "1d":
        at = datetime(local.year, local.month, local.day, tzinfo=tz)

        def step(moment: datetime) -> datetime:
            day = moment.date() + timedelta(days=1)
            return datetime(day.year, day.month, day.day, tzinfo=tz)

    else:
        at = datetime(local.year, local.month, 1, tzinfo=tz)

        def step(moment: datetime) -> datetime:
            first = date(moment.year + moment.month // 12, moment.month % 12 + 1, 1)
            return datetime(first.year, first.month, 1, tzinfo=tz)

    edges = [at]
    while edges[-1] < end:
        if len(edges) > MAX_INTERVALS:
            raise BillingError(f"At most {MAX_INTERVALS} intervals per query; choose a coarser resolution.")
        edges.append(step(edges[-1]))
    return edges


def cost_series(*, access: Access, facility_id: int, start: datetime, end: datetime, resolution: str) -> CostSeries:
    """The facility's energy cost (gross) per calendar interval overlapping [start, end), in its time zone."""
    if resolution not in RESOLUTIONS:
        raise BillingError(f"Choose a resolution of {', '.join(RESOLUTIONS)}.")
    facility = facility_get(access=access, facility_id=facility_id)
    tz = ZoneInfo(facility.timezone)
    now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    currency = ""
    cumulative: dict[int, Decimal | None] = {}

    def so_far(moment_ms: int, month: Month) -> Decimal | None:
        """The month's energy cost up to `moment_ms` (its start: nothing yet)."""
        nonlocal currency
        if moment_ms <= month.start_ms:
            return Decimal("0.00")
        key = moment_ms
        if key not in cumulative:
            try:
                computed = bill_compute(
                    access=access, facility_id=facility_id, year=month.year, month=month.month, now_ms=moment_ms
                )
            except BillingError:
                cumulative[key] = None
                return None
            currency = computed.result.currency
            total = Decimal("0")
            for line in computed.result.lines:
                if line.kind in ENERGY_LINES:
                    vat = Decimal(str(computed.segments[line.segment].terms.vat_percent)) / 100
                    total += line.amount * (1 + vat)
            cumulative[key] = total.quantize(Decimal("0.01"))
        return cumulative[key]

    points: list[CostPoint] = []
    edges = _edges(start=start, end=end, resolution=resolution, tz=tz)
    for a, b in zip(edges, edges[1:], strict=False):
        a_ms, b_ms = int(a.timestamp() * 1000), int(b.timestamp() * 1000)
        if a_ms >= now_ms:
            points.append(CostPoint(a, b, None))
            continue
        local = a.astimezone(tz)
        month = Month(local.year, local.month, tz)
        # A 1-month interval is the month itself; hours and days never cross a month's midnight.
        upto, since = so_far(min(b_ms, now_ms, month.end_ms), month), so_far(a_ms, month)
        points.append(CostPoint(a, b, None if upto is None or since is None else upto - since))
    return CostSeries(
        facility_id=facility.pk,
        timezone=facility.timezone,
        currency=currency,
        resolution=resolution,
        points=points,
    )


@dataclass(frozen=True, slots=True)
class HouseholdTariff:
    """The tariff a home buys at today, in the figures a household's bill shows (VAT included)."""

    facility_id: int
    contract_id: int
    name: str
    currency: str
    valid_from: date
    valid_to: date | None
    # None when the price changes with the hour or the amount (a time-of-use or block tariff).
    price_per_kwh: Decimal | None
    standing_charge_per_month: Decimal


def household_tariff_get(*, access: Access, facility_id: int, on: date | None = None) -> HouseholdTariff | None:
    facility = facility_get(access=access, facility_id=facility_id)
    on = on or datetime.now(tz=ZoneInfo(facility.timezone)).date()
    contract = (
        Contract.objects.filter(tenant_id=access.tenant_id, facility=facility, valid_from__lte=on)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=on))
        .select_related("tariff")
        .first()
    )
    if contract is None:
        return None
    version = (
        contract.tariff.versions.filter(valid_from__lte=on)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=on))
        .first()
    )
    if version is None:
        return None
    gross = 1 + version.vat_percent / 100
    rates = {
        version.energy_rates[cell] for name in DAY_TYPES for row in getattr(version, f"{name}_schedule") for cell in row
    }
    price = None
    if len(rates) == 1 and not version.energy_tiers:
        per_kwh = Decimal(str(rates.pop())) + sum((Decimal(str(x["per_kwh"])) for x in version.levies), Decimal(0))
        price = (per_kwh * gross).quantize(Decimal("0.000001"))
    standing = ((version.fixed_per_month + version.fixed_per_meter_month) * gross).quantize(Decimal("0.01"))
    return HouseholdTariff(
        facility_id=facility.pk,
        contract_id=contract.pk,
        name=contract.tariff.name,
        currency=contract.tariff.currency,
        valid_from=contract.valid_from,
        valid_to=contract.valid_to,
        price_per_kwh=price,
        standing_charge_per_month=standing,
    )
