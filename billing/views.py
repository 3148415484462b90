"""Portal pages of billing: a facility's bill, the client's month, tariffs and peaks.

Each page calls the same selectors and services as /api/v1/, so the figures are the API's.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.selectors import tenant_get
from billing import documents, selectors, services
from billing.errors import BillingError
from billing.forms import AllocationForm, ContractForm, CostCentreForm, TariffForm, VersionForm
from billing.models import Contract, Tariff
from devices.models import Facility
from devices.selectors import facility_list, load_list
from portal.access import request_access

_Row = TypeVar("_Row", bound=Model)

MS = 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _access(request: HttpRequest) -> Access:
    try:
        return request_access(request)
    except TenantAccessDenied as exc:
        raise Http404(_("You are not a member of any tenant.")) from exc


def _facility(access: Access, request: HttpRequest) -> tuple[Facility | None, list[Facility]]:
    facilities = list(facility_list(access=access).order_by("name"))
    raw = request.GET.get("facility", "")
    if raw:
        chosen = next((f for f in facilities if str(f.pk) == raw), None)
        if chosen is None:
            raise Http404(_("No such facility."))
        return chosen, facilities
    return (facilities[0] if facilities else None), facilities


def _month(request: HttpRequest, tz: ZoneInfo) -> tuple[int, int]:
    raw = request.GET.get("month", "")
    if raw:
        try:
            return selectors.parse_month(raw)
        except BillingError as exc:
            raise Http404(str(exc)) from exc
    local = datetime.now(tz=UTC).astimezone(tz)
    return local.year, local.month


def _document(access: Access, facility: Facility, year: int, month: int) -> documents.BillDocument:
    issued = selectors.bill_latest(access=access, facility_id=facility.pk, year=year, month=month)
    if issued is not None:
        return documents.document_from_bill(selectors.bill_get(access=access, bill_id=issued.pk))
    computed = selectors.bill_compute(access=access, facility_id=facility.pk, year=year, month=month, now_ms=_now_ms())
    return documents.document_from_computed(computed)


def _chart(report: selectors.PeakReport) -> dict[str, Any]:
    """The 15-minute demand chart's data (billing-chart.js): seconds, kW, the peak interval, the target."""
    return {
        "t": [ms // MS for ms in report.curve_starts_ms],
        "kw": report.curve_kw,
        "peak": report.month_peak.start_ms // MS if report.month_peak else None,
        "target": report.target_kw,
        "timezone": report.facility.timezone,
    }


def _report(access: Access, facility: Facility, year: int, month: int) -> selectors.PeakReport:
    return selectors.peaks_report(access=access, facility_id=facility.pk, year=year, month=month, now_ms=_now_ms())


def _facility_month(request: HttpRequest) -> tuple[Access, dict[str, Any], Facility | None, tuple[int, int]]:
    """The page's access, its base context, and the facility and month picked (this month by default)."""
    access = _access(request)
    facility, facilities = _facility(access, request)
    context: dict[str, Any] = {"tenant": tenant_get(access=access), "facilities": facilities, "facility": facility}
    year_month = (0, 0)
    if facility is not None:
        year_month = _month(request, ZoneInfo(facility.timezone))
        context["month"] = f"{year_month[0]}-{year_month[1]:02d}"
    return access, context, facility, year_month


@login_required
def bill_page(request: HttpRequest) -> HttpResponse:
    access, context, facility, (year, month) = _facility_month(request)
    if facility is not None:
        try:
            context["bill"] = _document(access, facility, year, month)
            context["chart"] = _chart(_report(access, facility, year, month))
        except BillingError as exc:
            context["error"] = str(exc)
    return render(request, "billing/bill.html", context)


@login_required
def bill_export(request: HttpRequest, facility_id: int, month: str, fmt: str) -> HttpResponse:
    access = _access(request)
    if fmt not in ("csv", "pdf"):
        raise Http404()
    try:
        facility = facility_list(access=access).get(pk=facility_id)
        year, number = selectors.parse_month(month)
        document = _document(access, facility, year, number)
    except Facility.DoesNotExist as exc:
        raise Http404() from exc
    except BillingError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    return documents.bill_response(document, fmt)


@login_required
def client_page(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    local = datetime.now(tz=UTC)
    raw = request.GET.get("month") or f"{local.year}-{local.month:02d}"
    context: dict[str, Any] = {"tenant": tenant_get(access=access), "month": raw}
    try:
        year, month = selectors.parse_month(raw)
        rows = selectors.client_month(access=access, year=year, month=month, now_ms=_now_ms())
        docs = documents.documents_of(rows)
        context["documents"] = docs
        context["currencies"] = sorted({d.currency for d in docs})
        context["totals"] = {
            "net": sum(d.net for d in docs),
            "vat": sum(d.vat for d in docs),
            "gross": sum(d.gross for d in docs),
            "kwh": sum(d.energy_kwh for d in docs),
        }
    except BillingError as exc:
        context["error"] = str(exc)
    return render(request, "billing/client.html", context)


@login_required
def client_export(request: HttpRequest, month: str) -> HttpResponse:
    access = _access(request)
    try:
        year, number = selectors.parse_month(month)
        rows = selectors.client_month(access=access, year=year, month=number, now_ms=_now_ms())
    except BillingError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    return documents.client_response(documents.documents_of(rows), year=year, month=number)


@login_required
def peaks_page(request: HttpRequest) -> HttpResponse:
    access, context, facility, (year, month) = _facility_month(request)
    if facility is not None:
        try:
            report = _report(access, facility, year, month)
            tz = ZoneInfo(facility.timezone)
            context["report"] = report
            context["top"] = [
                (datetime.fromtimestamp(r.start_ms / MS, tz=UTC).astimezone(tz), r.kw, r.loads, r.estimated)
                for r in report.top
            ]
            if report.year_peak:
                context["year_peak"] = (
                    datetime.fromtimestamp(report.year_peak[0] / MS, tz=UTC).astimezone(tz),
                    report.year_peak[1],
                    report.year_peak_estimated,
                )
            context["chart"] = _chart(report)
        except BillingError as exc:
            context["error"] = str(exc)
    return render(request, "billing/peaks.html", context)


def _version_dict(version: Any) -> dict[str, Any]:
    return {name: getattr(version, name) for name in services.VERSION_FIELDS}


@login_required
def tariffs_page(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    tenant = tenant_get(access=access)
    tariffs = list(selectors.tariff_list(access=access))
    facilities = list(facility_list(access=access).order_by("name"))
    tariff_form = TariffForm(prefix="tariff")
    version_form = VersionForm(prefix="version")
    contract_form = ContractForm(
        prefix="contract",
        facilities=[(f.pk, f.name) for f in facilities],
        tariffs=[(t.pk, t.name) for t in tariffs],
    )
    loads = [(load.pk, f"{load.facility.name}: {load.name}") for load in load_list(access=access)]
    allocation_form = AllocationForm(
        prefix="allocation",
        initial={"fixed_charge_key": selectors.billing_profile(tenant_id=tenant.pk).fixed_charge_key},
    )
    centre_form = CostCentreForm(prefix="centre", loads=loads)
    if request.method == "POST":
        if not access.is_admin:
            return render(request, "billing/tariffs.html", {"tenant": tenant, "forbidden": True}, status=403)
        action = request.POST.get("action", "")
        try:
            if action == "allocation":
                allocation_form = AllocationForm(request.POST, prefix="allocation")
                if allocation_form.is_valid():
                    services.billing_profile_set(tenant=tenant, **allocation_form.cleaned_data)
                    messages.success(request, _("Allocation key saved."))
                    return redirect("billing:tariffs")
            if action == "cost_centre":
                centre_form = CostCentreForm(request.POST, prefix="centre", loads=loads)
                if centre_form.is_valid():
                    d = centre_form.cleaned_data
                    services.cost_centre_create(
                        tenant=tenant,
                        name=d["name"],
                        area_m2=d["area_m2"],
                        loads=load_list(access=access).filter(pk__in=d["loads"]),
                    )
                    messages.success(request, _("Cost centre created."))
                    return redirect("billing:tariffs")
            if action == "create":
                tariff_form = TariffForm(request.POST, prefix="tariff")
                if tariff_form.is_valid():
                    services.tariff_create(
                        tenant=tenant,
                        name=tariff_form.cleaned_data["name"],
                        currency=tariff_form.cleaned_data["currency"],
                        versions=[tariff_form.version()],
                    )
                    messages.success(request, _("Tariff created."))
                    return redirect("billing:tariffs")
            elif action == "add_version":
                version_form = VersionForm(request.POST, prefix="version")
                tariff = selectors.tariff_get(access=access, tariff_id=int(request.POST.get("tariff", "0") or 0))
                if version_form.is_valid():
                    existing = [_version_dict(v) for v in tariff.versions.all()]
                    services.tariff_update(tariff=tariff, versions=[*existing, version_form.version()])
                    messages.success(request, _("New version added."))
                    return redirect("billing:tariffs")
            elif action == "assign":
                contract_form = ContractForm(
                    request.POST,
                    prefix="contract",
                    facilities=[(f.pk, f.name) for f in facilities],
                    tariffs=[(t.pk, t.name) for t in tariffs],
                )
                if contract_form.is_valid():
                    d = contract_form.cleaned_data
                    services.contract_create(
                        facility=facility_list(access=access).get(pk=d["facility"]),
                        tariff=selectors.tariff_get(access=access, tariff_id=d["tariff"]),
                        valid_from=d["valid_from"],
                        valid_to=d["valid_to"],
                    )
                    messages.success(request, _("Tariff assigned."))
                    return redirect("billing:tariffs")
        except (Tariff.DoesNotExist, Facility.DoesNotExist) as exc:
            raise Http404() from exc
        except (ValueError, ValidationError) as exc:
            text = "; ".join(
                f"{field}: {' '.join(errors)}"
                for field, errors in getattr(exc, "message_dict", {"": [str(exc)]}).items()
            )
            messages.error(request, text)
    return render(
        request,
        "billing/tariffs.html",
        {
            "tenant": tenant,
            "tariffs": tariffs,
            "contracts": list(selectors.contract_list(access=access).order_by("facility__name", "valid_from")),
            "tariff_form": tariff_form,
            "version_form": version_form,
            "contract_form": contract_form,
            "allocation_form": allocation_form,
            "centre_form": centre_form,
            "cost_centres": list(selectors.cost_centre_list(access=access)),
            "can_edit": access.is_admin,
        },
        status=400 if request.method == "POST" else 200,
    )


def _admin_object(access: Access, objects: QuerySet[_Row], pk: int) -> _Row:
    """One of the tenant's rows for its admins; anyone else, or another tenant's row, gets a 404."""
    if not access.is_admin:
        raise Http404()
    try:
        return objects.get(pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404() from exc


def _admin_contract(access: Access, contract_id: int) -> Contract:
    return _admin_object(access, selectors.contract_list(access=access), contract_id)


@login_required
@require_POST
def contract_delete(request: HttpRequest, contract_id: int) -> HttpResponse:
    access = _access(request)
    contract = _admin_contract(access, contract_id)
    services.contract_delete(contract=contract)
    messages.success(request, _("Contract ended."))
    return redirect("billing:tariffs")


@login_required
@require_POST
def contract_end(request: HttpRequest, contract_id: int) -> HttpResponse:
    """End a contract on a day, so another tariff can follow it; the same service as PATCH /api/v1/contracts/<id>/."""
    access = _access(request)
    contract = _admin_contract(access, contract_id)
    try:
        valid_to = date.fromisoformat(request.POST.get("valid_to", ""))
    except ValueError:
        messages.error(request, _("Choose the contract's last day."))
        return redirect("billing:tariffs")
    try:
        services.contract_end(access=access, contract=contract, valid_to=valid_to)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Contract ends on %(d)s.") % {"d": valid_to.isoformat()})
    return redirect("billing:tariffs")


@login_required
def cost_centre_delete(request: HttpRequest, centre_id: int) -> HttpResponse:
    """Ask first (GET), then delete (POST): the same service as DELETE /api/v1/cost-centres/<id>/. Tenant
    admins only; anyone else, or another tenant's cost centre, gets a 404."""
    access = _access(request)
    centre = _admin_object(access, selectors.cost_centre_list(access=access), centre_id)
    if request.method == "POST":
        services.cost_centre_delete(centre=centre)
        messages.success(request, _("Cost centre %(name)s deleted.") % {"name": centre.name})
        return redirect("billing:tariffs")
    return render(
        request,
        "billing/cost_centre_delete.html",
        {"centre": centre, "tenant": tenant_get(access=access), "loads": list(centre.loads.all())},
    )
