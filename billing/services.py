"""Writes of billing: tariffs and their versions, contracts, allocation settings, and issued bills."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DecimalField, ProtectedError, Sum
from django.utils.translation import gettext as _

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.models import Tenant
from accounts.selectors import access_for_tenant
from billing import selectors
from billing.calculation import money
from billing.errors import BillingError
from billing.models import (
    Bill,
    BillingProfile,
    BillLine,
    Contract,
    CostCentre,
    DemandInterval,
    DemandMark,
    DemandMode,
    DemandState,
    FacilityPeak,
    Tariff,
    TariffVersion,
)
from billing.validation import validate_currency, validate_energy, validate_levies, validate_tiers, validate_windows
from devices.models import Channel, Facility, Load

VERSION_FIELDS = (
    "valid_from",
    "valid_to",
    "energy_rates",
    "weekday_schedule",
    "weekend_schedule",
    "holiday_schedule",
    "energy_tiers",
    "demand_mode",
    "demand_price",
    "demand_windows",
    "ratchet_percent",
    "ratchet_months",
    "utilisation_split_hours",
    "low_use_demand_price",
    "low_use_energy_price",
    "high_use_demand_price",
    "high_use_energy_price",
    "fixed_per_day",
    "fixed_per_month",
    "fixed_per_meter_month",
    "levies",
    "vat_percent",
)


def _overlaps(a_from: date, a_to: date | None, b_from: date, b_to: date | None) -> bool:
    return (b_to is None or a_from <= b_to) and (a_to is None or b_from <= a_to)


def _check_range(valid_from: date, valid_to: date | None) -> None:
    if valid_to is not None and valid_to < valid_from:
        raise ValidationError({"valid_to": _("The validity ends before it begins.")})


def _version(*, tariff: Tariff, data: dict[str, Any]) -> TariffVersion:
    unknown = set(data) - set(VERSION_FIELDS)
    if unknown:
        raise ValidationError({"versions": _("Unknown fields: %(f)s.") % {"f": ", ".join(sorted(unknown))}})
    for name, value in data.items():
        # Prices arrive as JSON numbers; a float's binary expansion is not the price that was meant.
        if isinstance(TariffVersion._meta.get_field(name), DecimalField) and isinstance(value, float | int):
            data[name] = Decimal(str(value))
    version = TariffVersion(tenant_id=tariff.tenant_id, tariff=tariff, **data)
    if not version.weekend_schedule:
        version.weekend_schedule = version.weekday_schedule
    if not version.holiday_schedule:
        version.holiday_schedule = version.weekend_schedule
    validate_energy(
        version.energy_rates,
        {
            "weekday": version.weekday_schedule,
            "weekend": version.weekend_schedule,
            "holiday": version.holiday_schedule,
        },
    )
    validate_windows(version.demand_windows)
    validate_tiers(version.energy_tiers)
    validate_levies(version.levies)
    if version.demand_mode not in DemandMode.values:
        raise ValidationError({"demand_mode": _("Unknown demand mode.")})
    _check_range(version.valid_from, version.valid_to)
    version.full_clean(exclude=["tariff", "tenant"])
    return version


def _versions(*, tariff: Tariff, versions: Sequence[dict[str, Any]]) -> list[TariffVersion]:
    if not versions:
        raise ValidationError({"versions": _("A tariff needs at least one version.")})
    built = sorted((_version(tariff=tariff, data=dict(v)) for v in versions), key=lambda v: v.valid_from)
    for earlier, later in zip(built, built[1:], strict=False):
        if _overlaps(earlier.valid_from, earlier.valid_to, later.valid_from, later.valid_to):
            raise ValidationError(
                {
                    "versions": _("The versions from %(a)s and from %(b)s overlap.")
                    % {"a": earlier.valid_from, "b": later.valid_from}
                }
            )
    return built


@transaction.atomic
def tariff_create(*, tenant: Tenant, name: str, versions: Sequence[dict[str, Any]], currency: str = "EUR") -> Tariff:
    tariff = Tariff(tenant=tenant, name=name, currency=validate_currency(currency))
    tariff.full_clean()
    tariff.save()
    for version in _versions(tariff=tariff, versions=versions):
        version.save()
    return tariff


@transaction.atomic
def tariff_update(
    *,
    tariff: Tariff,
    name: str | None = None,
    currency: str | None = None,
    versions: Sequence[dict[str, Any]] | None = None,
) -> Tariff:
    """Change a tariff; `versions` replaces all of them. Issued bills keep the prices they were issued with."""
    if name is not None:
        tariff.name = name
    if currency is not None:
        tariff.currency = validate_currency(currency)
    tariff.full_clean()
    tariff.save()
    if versions is not None:
        built = _versions(tariff=tariff, versions=versions)
        tariff.versions.all().delete()
        for version in built:
            version.save()
    return tariff


@transaction.atomic
def tariff_delete(*, tariff: Tariff) -> None:
    try:
        tariff.delete()
    except ProtectedError as exc:
        raise ValidationError(
            {"tariff": _("The tariff is assigned to facilities; end those contracts first.")}
        ) from exc


@transaction.atomic
def contract_create(*, facility: Facility, tariff: Tariff, valid_from: date, valid_to: date | None = None) -> Contract:
    if tariff.tenant_id != facility.tenant_id:
        raise ValidationError({"tariff": _("There is no such tariff in your tenant.")})
    _check_range(valid_from, valid_to)
    # Locks the facility's contracts, so two overlapping assignments cannot both pass the check.
    for other in Contract.objects.select_for_update().filter(facility=facility):
        if _overlaps(valid_from, valid_to, other.valid_from, other.valid_to):
            raise ValidationError(
                {
                    "valid_from": _("The facility already has the contract %(c)s over these dates.")
                    % {"c": f"{other.tariff.name} from {other.valid_from}"}
                }
            )
    contract = Contract(
        tenant_id=facility.tenant_id, facility=facility, tariff=tariff, valid_from=valid_from, valid_to=valid_to
    )
    contract.full_clean()
    contract.save()
    return contract


@transaction.atomic
def contract_delete(*, contract: Contract) -> None:
    contract.delete()


def _month_last_day(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


@transaction.atomic
def contract_end(*, access: Access, contract: Contract, valid_to: date) -> Contract:
    """End a contract on `valid_to` (its last local day, inclusive), so another can follow it.

    Tenant admins only. Refused before the contract begins, after its current end, and inside a month
    whose final bill has been issued (that bill would no longer match its contract); a month with a
    change is billed pro rata, each part at its own contract's tariff.
    """
    if not access.is_admin or contract.tenant_id != access.tenant_id:
        raise TenantAccessDenied(_("Only the tenant's admins end its contracts."))
    contract = Contract.objects.select_for_update().get(pk=contract.pk)
    if valid_to < contract.valid_from:
        raise ValidationError(
            {"valid_to": _("The contract begins on %(d)s; it cannot end before.") % {"d": contract.valid_from}}
        )
    if contract.valid_to is not None and valid_to > contract.valid_to:
        raise ValidationError({"valid_to": _("The contract ends on %(d)s already.") % {"d": contract.valid_to}})
    issued = sorted(
        (year, month)
        for year, month in Bill.objects.filter(
            tenant_id=contract.tenant_id, facility_id=contract.facility_id, status=Bill.Status.FINAL
        ).values_list("year", "month")
        if _month_last_day(year, month) > valid_to
        and (contract.valid_to is None or date(year, month, 1) <= contract.valid_to)
    )
    if issued:
        year, month = issued[-1]
        raise ValidationError(
            {
                "valid_to": _("The bill of %(m)s has been issued; end the contract after %(d)s.")
                % {"m": f"{year}-{month:02d}", "d": _month_last_day(year, month)}
            }
        )
    contract.valid_to = valid_to
    contract.full_clean()
    contract.save(update_fields=["valid_to"])
    return contract


@transaction.atomic
def billing_profile_set(*, tenant: Tenant, fixed_charge_key: str) -> BillingProfile:
    profile = selectors.billing_profile(tenant_id=tenant.pk)
    profile.fixed_charge_key = fixed_charge_key
    profile.full_clean(exclude=["tenant"])
    profile.save()
    return profile


@transaction.atomic
def cost_centre_create(
    *, tenant: Tenant, name: str, area_m2: Decimal | float = 0, loads: Iterable[Load] = ()
) -> CostCentre:
    loads = list(loads)
    if any(load.tenant_id != tenant.pk for load in loads):
        raise ValidationError({"loads": _("There is no such load in your tenant.")})
    centre = CostCentre(tenant=tenant, name=name, area_m2=Decimal(str(area_m2)))
    centre.full_clean()
    centre.save()
    centre.loads.set(loads)
    return centre


def cost_centre_delete(*, centre: CostCentre) -> None:
    """Remove a cost centre; its loads stay, and later bills share their fixed charges without it."""
    centre.delete()


# --- Bills --------------------------------------------------------------------------------------


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def bill_detail(computed: selectors.ComputedBill) -> dict[str, Any]:
    """The parts of a computation a bill keeps beside its lines: segments, allocation, top peaks, projection."""
    result = computed.result
    return {
        "segments": [
            {
                "from": _dt(s.start_ms).isoformat(),  # type: ignore[union-attr]
                "to": _dt(s.end_ms).isoformat(),  # type: ignore[union-attr]
                "days": s.days,
                "tariff": s.terms.tariff_name,
                "tariff_version": s.terms.version_id,
            }
            for s in computed.segments
        ],
        "billed_demand_kw": result.billed_demand_kw,
        "peak_estimated": result.peak_estimated,
        "projected_gross": str(result.projected_gross) if result.projected_gross is not None else None,
        "top_peaks": [{"start": _dt(ms).isoformat(), "kw": kw} for ms, kw in result.top_peaks],  # type: ignore[union-attr]
        "allocation": [
            {
                "load": row.load_id,
                "name": row.name,
                "cost_centre": row.cost_centre,
                "kwh": row.kwh,
                "peak_kw": row.peak_kw,
                "energy": str(row.energy),
                "demand": str(row.demand),
                "fixed": str(row.fixed),
                "vat": str(row.vat),
                "total": str(row.total),
            }
            for row in result.allocation
        ],
    }


def _signature(lines: Iterable[tuple[str, str, float, str, Decimal, Decimal]]) -> list[tuple[Any, ...]]:
    return [
        (kind, label, round(q, 6), unit, Decimal(p).quantize(Decimal("0.000001")), a)
        for kind, label, q, unit, p, a in lines
    ]


def _store(
    *,
    tenant_id: int,
    facility: Facility | None,
    year: int,
    month: int,
    start: datetime,
    end: datetime,
    currency: str,
    lines: Sequence[tuple[str, str, float, str, Decimal, Decimal, datetime | None]],
    energy_kwh: float,
    peak: tuple[float, datetime | None] | None,
    detail: dict[str, Any],
) -> Bill:
    """Issue a final bill, or a new version of it when anything differs from the latest; else return the latest."""
    latest = (
        Bill.objects.select_for_update()
        .filter(tenant_id=tenant_id, facility=facility, year=year, month=month)
        .order_by("-version")
        .first()
    )
    if latest is not None:
        old = [(x.kind, x.label, x.quantity, x.unit, x.unit_price, x.amount) for x in latest.lines.all()]
        if _signature(old) == _signature([line[:6] for line in lines]):
            return latest
    net = sum((line[5] for line in lines if line[0] != "vat"), Decimal(0))
    vat = sum((line[5] for line in lines if line[0] == "vat"), Decimal(0))
    bill = Bill.objects.create(
        tenant_id=tenant_id,
        facility=facility,
        year=year,
        month=month,
        version=latest.version + 1 if latest else 1,
        status=Bill.Status.FINAL,
        currency=currency,
        period_start=start,
        period_end=end,
        net=net,
        vat=vat,
        gross=net + vat,
        energy_kwh=energy_kwh,
        peak_kw=peak[0] if peak else None,
        peak_start=peak[1] if peak else None,
        previous=latest,
        difference=(net + vat - latest.gross) if latest else None,
        detail=detail,
    )
    BillLine.objects.bulk_create(
        BillLine(
            bill=bill,
            position=i,
            kind=kind,
            label=label,
            quantity=quantity,
            unit=unit,
            unit_price=Decimal(unit_price).quantize(Decimal("0.000001")),
            amount=amount,
            interval_start=interval,
        )
        for i, (kind, label, quantity, unit, unit_price, amount, interval) in enumerate(lines)
    )
    return bill


@transaction.atomic
def bill_issue(*, facility: Facility, year: int, month: int, now_ms: int | None = None) -> Bill:
    """Issue the final bill of a month that has ended (in the facility's time zone).

    Idempotent: issuing again with unchanged data returns the same bill; late data or a corrected
    tariff issues a new version that records the difference to the previous one.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    computed = selectors.bill_compute(
        access=access_for_tenant(tenant=facility.tenant), facility_id=facility.pk, year=year, month=month, now_ms=now_ms
    )
    if computed.draft:
        raise BillingError(f"{computed.month} has not ended yet; its bill is a draft.")
    result = computed.result
    lines = [
        (x.kind, x.label, x.quantity, x.unit, Decimal(str(x.unit_price)), x.amount, _dt(x.interval_start_ms))
        for x in result.lines
    ]
    return _store(
        tenant_id=facility.tenant_id,
        facility=facility,
        year=year,
        month=month,
        start=_dt(computed.month.start_ms),  # type: ignore[arg-type]
        end=_dt(computed.month.end_ms),  # type: ignore[arg-type]
        currency=result.currency,
        lines=lines,
        energy_kwh=result.energy_kwh,
        peak=(result.peak_kw, _dt(result.peak_start_ms)) if result.peak_kw is not None else None,
        detail=bill_detail(computed),
    )


@transaction.atomic
def client_bill_issue(*, tenant: Tenant, year: int, month: int) -> Bill:
    """The client's month: one line per facility, the latest final version of each facility's bill."""
    access = access_for_tenant(tenant=tenant)
    latest: dict[int, Bill] = {}
    for bill in selectors.bill_list(access=access).filter(year=year, month=month, facility__isnull=False):
        if bill.facility_id not in latest or bill.version > latest[bill.facility_id].version:
            latest[bill.facility_id] = bill  # type: ignore[index]
    if not latest:
        raise BillingError(f"No facility bill of {year}-{month:02d} has been issued yet.")
    bills = sorted(latest.values(), key=lambda b: b.facility.name if b.facility else "")
    currencies = {b.currency for b in bills}
    if len(currencies) != 1:
        raise BillingError(
            _("The facilities are billed in different currencies: %(c)s.") % {"c": ", ".join(sorted(currencies))}
        )
    lines = [
        ("facility", f"{b.facility.name} (v{b.version})" if b.facility else "", 1.0, "bill", b.net, money(b.net), None)
        for b in bills
    ]
    vat_total = sum((b.vat for b in bills), Decimal(0))
    lines.append(("vat", "VAT", float(sum(b.net for b in bills)), bills[0].currency, Decimal(0), vat_total, None))
    return _store(
        tenant_id=tenant.pk,
        facility=None,
        year=year,
        month=month,
        start=min(b.period_start for b in bills),
        end=max(b.period_end for b in bills),
        currency=bills[0].currency,
        lines=lines,
        energy_kwh=sum(b.energy_kwh for b in bills),
        peak=None,
        detail={"facilities": [{"facility": b.facility_id, "bill": b.pk, "version": b.version} for b in bills]},
    )


def bills_issue_ended_month(*, now_ms: int | None = None) -> int:
    """Issue (or re-issue, when data changed) every facility's and client's bill of the month before now.

    Each facility is billed in its own time zone; the facilities without a contract are skipped.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    issued = 0
    clients: set[tuple[int, int, int]] = set()
    for facility in Facility.objects.filter(contracts__isnull=False).distinct().select_related("tenant"):
        local = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(selectors.ZoneInfo(facility.timezone))
        year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
        try:
            bill_issue(facility=facility, year=year, month=month, now_ms=now_ms)
        except BillingError:
            continue
        issued += 1
        clients.add((facility.tenant_id, year, month))
    for tenant_id, year, month in sorted(clients):
        client_bill_issue(tenant=Tenant.objects.get(pk=tenant_id), year=year, month=month)
    return issued


# --- The stored 15-minute demand and peaks ---------------------------------------------------------


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def demand_mark(*, spans: Sequence[tuple[int, int, int]]) -> int:
    """The 15-minute rollups of these channels changed over [start, end): their facilities' demand is due.

    Runs inside the rollup refresh's transaction (the `rollups_written` signal), so a mark is never lost
    between a rollup write and its demand; one query to map the channels and one insert.
    """
    if not spans:
        return 0
    facility_of = dict(
        Channel.objects.filter(pk__in={channel_id for channel_id, _, _ in spans}).values_list(
            "pk", "device__facility_id"
        )
    )
    due: dict[int, tuple[int, int]] = {}
    for channel_id, start_ms, end_ms in spans:
        facility_id = facility_of.get(channel_id)
        if facility_id is None:
            continue
        lo, hi = due.get(facility_id, (start_ms, end_ms))
        due[facility_id] = (min(lo, start_ms), max(hi, end_ms))
    DemandMark.objects.bulk_create(
        [DemandMark(facility_id=fid, start_ms=lo, end_ms=hi) for fid, (lo, hi) in due.items()]
    )
    return len(due)


def _local_months(tz: ZoneInfo, start_ms: int, end_ms: int) -> set[tuple[int, int]]:
    """The calendar months (in `tz`) of the intervals starting in [start_ms, end_ms)."""
    first = datetime.fromtimestamp(start_ms / 1000, tz=tz)
    last = datetime.fromtimestamp((end_ms - selectors.INTERVAL_MS) / 1000, tz=tz)
    months = set()
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.add((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _peaks_refresh(*, facility: Facility, months: set[tuple[int, int]]) -> None:
    """Recompute the stored peaks of these months and of their years from the stored demand."""
    tz = ZoneInfo(facility.timezone)
    for year, month in sorted(months):
        period = selectors.Month(year, month, tz)
        rows = DemandInterval.objects.filter(
            facility_id=facility.pk, start__gte=_at(period.start_ms), start__lt=_at(period.end_ms)
        )
        top = rows.order_by("-kw", "start").first()
        if top is None:
            FacilityPeak.objects.filter(facility_id=facility.pk, year=year, month=month).delete()
            continue
        energy = (rows.aggregate(total=Sum("kw"))["total"] or 0.0) * 0.25
        FacilityPeak.objects.update_or_create(
            facility_id=facility.pk,
            year=year,
            month=month,
            defaults={"kw": top.kw, "interval_start": top.start, "estimated": top.estimated, "energy_kwh": energy},
        )
    for year in sorted({y for y, _m in months}):
        monthly = list(FacilityPeak.objects.filter(facility_id=facility.pk, year=year, month__gte=1))
        if not monthly:
            FacilityPeak.objects.filter(facility_id=facility.pk, year=year, month=0).delete()
            continue
        best = min(monthly, key=lambda p: (-p.kw, p.interval_start))
        FacilityPeak.objects.update_or_create(
            facility_id=facility.pk,
            year=year,
            month=0,
            defaults={
                "kw": best.kw,
                "interval_start": best.interval_start,
                "estimated": best.estimated,
                "energy_kwh": sum(p.energy_kwh for p in monthly),
            },
        )


def _demand_write(*, facility: Facility, demand: selectors.Demand, whole: bool) -> set[tuple[int, int]]:
    """Replace the stored demand over the computed span (all of it when `whole`); the months touched."""
    rows = DemandInterval.objects.filter(facility_id=facility.pk)
    tz = ZoneInfo(facility.timezone)
    months: set[tuple[int, int]] = set()
    if whole:
        months = {(p.year, p.month) for p in FacilityPeak.objects.filter(facility_id=facility.pk, month__gte=1)}
        FacilityPeak.objects.filter(facility_id=facility.pk).delete()
        rows.delete()
    elif len(demand.starts_ms):
        end_ms = int(demand.starts_ms[-1]) + selectors.INTERVAL_MS
        rows.filter(start__gte=_at(int(demand.starts_ms[0])), start__lt=_at(end_ms)).delete()
    if len(demand.starts_ms) == 0:
        return months
    keep = np.isfinite(demand.kw)
    DemandInterval.objects.bulk_create(
        [
            DemandInterval(facility_id=facility.pk, start=_at(int(start)), kw=float(kw), estimated=bool(flag))
            for start, kw, flag in zip(
                demand.starts_ms[keep].tolist(), demand.kw[keep].tolist(), demand.estimated[keep].tolist(), strict=True
            )
        ],
        batch_size=5000,
    )
    return months | _local_months(tz, int(demand.starts_ms[0]), int(demand.starts_ms[-1]) + selectors.INTERVAL_MS)


def demand_settle(*, facility_ids: Sequence[int] | None = None, budget_s: float | None = None) -> int:
    """Bring the stored demand and peaks of these facilities (all when None) up to date; returns those done.

    With `budget_s`, it stops after the first facility done past that many seconds (the beat task's run
    stays short when many facilities need a whole recompute, a fresh install say); the rest wait for the
    next run, and reads settle their own facility anyway.

    A facility whose zone or metering channels changed since (a zone change, a device moved in or out),
    or that has no stored demand yet, is recomputed whole; otherwise only its marked spans are. Each
    facility runs in its own transaction and locks its marks, so two workers never store one span twice.
    """
    facilities = Facility.objects.all()
    if facility_ids is not None:
        facilities = facilities.filter(pk__in=list(facility_ids))
    facilities = facilities.select_related("demand_state")
    channels = selectors.demand_channels(facility_ids=[f.pk for f in facilities])
    due = set(DemandMark.objects.filter(facility__in=facilities).values_list("facility_id", flat=True).distinct())
    done = 0
    deadline = None if budget_s is None else time.monotonic() + budget_s
    for facility in facilities:
        if deadline is not None and done and time.monotonic() > deadline:
            break
        channel_ids = channels.get(facility.pk, [])
        key = ",".join(str(pk) for pk in channel_ids)
        state = getattr(facility, "demand_state", None)
        stale = state is None or state.timezone != facility.timezone or state.channels != key
        if not stale and facility.pk not in due:
            continue
        with transaction.atomic():
            marks = list(DemandMark.objects.select_for_update(skip_locked=True).filter(facility_id=facility.pk))
            if stale:
                # Another worker may be at it: take the state row's lock, then look again.
                DemandState.objects.get_or_create(facility_id=facility.pk, defaults={"timezone": "", "channels": ""})
                state = DemandState.objects.select_for_update().get(facility_id=facility.pk)
                if state.timezone == facility.timezone and state.channels == key and not marks:
                    continue
                demand = selectors.demand_compute(
                    facility=facility, channel_ids=channel_ids, start_ms=None, end_ms=None
                )
                months = _demand_write(facility=facility, demand=demand, whole=True)
                state.timezone, state.channels = facility.timezone, key
                state.save()
            elif marks:
                lo = min(m.start_ms for m in marks)
                hi = max(m.end_ms for m in marks)
                demand = selectors.demand_compute(facility=facility, channel_ids=channel_ids, start_ms=lo, end_ms=hi)
                months = _demand_write(facility=facility, demand=demand, whole=False)
                months |= _local_months(ZoneInfo(facility.timezone), lo - lo % selectors.INTERVAL_MS, hi)
            else:
                continue
            _peaks_refresh(facility=facility, months=months)
            DemandMark.objects.filter(pk__in=[m.pk for m in marks]).delete()
            done += 1
    return done
