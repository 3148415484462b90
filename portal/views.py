from __future__ import annotations

import csv
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.errors import TenantAccessDenied
from accounts.models import Tenant
from accounts.selectors import access_for_user, membership_list, tenant_get
from accounts.services import membership_enter_as_platform_admin
from devices.models import Device, Facility
from portal import analysis
from portal.access import SESSION_TENANT_KEY, request_access
from portal.selectors import (
    LiveLayout,
    device_live_layout,
    facility_live_layout,
    facility_totals,
    park_current_kw,
    park_live_layouts,
    park_rows,
    park_tags,
)
from portal.services import LanguageError, user_language_set


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The facility park overview: one row per facility, updated live over `/ws/facilities/live`."""
    try:
        access = request_access(request)
    except TenantAccessDenied:
        if request.user.is_staff:
            return platform_admin_landing(request)
        return render(request, "portal/no_tenant.html", status=403)
    kind = request.GET.get("kind", "")
    tag = request.GET.get("tag", "")
    rows = park_rows(access=access, kind=kind, tag=tag)
    ids = [r.facility.pk for r in rows]
    at = now_ms()
    totals = facility_totals(access=access, facility_ids=ids, now_ms=at)
    current = park_current_kw(access=access, layouts=park_live_layouts(access=access, facility_ids=ids), now_ms=at)
    return render(
        request,
        "portal/home.html",
        {
            "tenant": tenant_get(access=access),
            "memberships": membership_list(user=request.user),  # type: ignore[arg-type]
            "rows": [(row, current.get(row.facility.pk), *totals.get(row.facility.pk, (None, None))) for row in rows],
            "kind": kind,
            "kinds": Facility.Kind.choices,
            "tag": tag,
            "tags": park_tags(access=access),
        },
    )


@login_required
def facility_dashboard(request: HttpRequest, facility_id: int) -> HttpResponse:
    """A facility's live dashboard; the page is the skeleton, `/ws/facilities/<id>/live` fills it."""
    try:
        access = request_access(request)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    try:
        layout = facility_live_layout(access=access, facility_id=facility_id)
    except Facility.DoesNotExist as exc:
        raise Http404("No such facility.") from exc
    if request.GET.get("range", "live") != "live":
        return _period_page(request, access=access, layout=layout, template="portal/facility_period.html")
    energy, peak = facility_totals(access=access, facility_ids=[facility_id], now_ms=now_ms()).get(
        facility_id, (None, None)
    )
    return render(
        request,
        "portal/facility.html",
        {
            "tenant": tenant_get(access=access),
            "layout": layout,
            "sections": layout.load_sections(),
            "energy_today_kwh": energy,
            "month_peak": peak,
            "devices_online": sum(1 for d in layout.devices if d.online),
            "ws_path": f"/ws/facilities/{facility_id}/live",
            "ranges": list(analysis.RANGE_LABELS.items()),
            "range": "live",
        },
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@require_POST
def language_switch(request: HttpRequest) -> HttpResponse:
    """The language switch: a signed-in user's choice is kept on their account, anyone's in a cookie."""
    language = request.POST.get("language", "")
    if request.user.is_authenticated:
        try:
            user_language_set(user=request.user, language=language)  # type: ignore[arg-type]
        except LanguageError as exc:
            return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    elif language not in {code for code, _name in settings.LANGUAGES}:
        return HttpResponse(_("The portal is offered in German and English."), status=400)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/"
    response = redirect(target)
    response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language, max_age=365 * 86400, samesite="Lax")
    return response


@login_required
@require_POST
def tenant_switch(request: HttpRequest) -> HttpResponse:
    try:
        tenant_id = int(request.POST.get("tenant_id", ""))
        access_for_user(user=request.user, tenant_id=tenant_id)  # type: ignore[arg-type]
    except (ValueError, TenantAccessDenied):
        return render(request, "portal/no_tenant.html", status=403)
    request.session[SESSION_TENANT_KEY] = tenant_id
    return redirect("portal:home")


def platform_admin_landing(request: HttpRequest) -> HttpResponse:
    """A platform admin without a tenant: the way to the Django admin, or into a tenant."""
    tenants = Tenant.objects.order_by("name") if request.user.is_superuser else Tenant.objects.none()
    return render(request, "portal/platform_admin.html", {"tenants": tenants})


@login_required
@require_POST
def platform_enter_tenant(request: HttpRequest) -> HttpResponse:
    try:
        tenant = Tenant.objects.get(pk=int(request.POST.get("tenant_id", "")))
        membership_enter_as_platform_admin(user=request.user, tenant=tenant)  # type: ignore[arg-type]
    except (ValueError, Tenant.DoesNotExist) as exc:
        raise Http404("No such tenant.") from exc
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    request.session[SESSION_TENANT_KEY] = tenant.pk
    return redirect("portal:home")


# --- Periods: the facility dashboard and device pages beyond the live window ----------------------


def _day(raw: str | None) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise analysis.AnalysisError(_("%(value)r is not a day (YYYY-MM-DD).") % {"value": raw}) from exc


def _request_period(request: HttpRequest, layout: LiveLayout) -> tuple[analysis.Period, str]:
    """The period and comparison a page asks for in its query string; raises AnalysisError."""
    compare = request.GET.get("compare", "")
    if compare and compare not in analysis.COMPARES:
        raise analysis.AnalysisError(_("Compare with the previous period or the same period last year."))
    period = analysis.period_resolve(
        range_name=request.GET.get("range", "today"),
        tz=layout.tz,
        now=datetime.now(tz=UTC),
        start=_day(request.GET.get("from")),
        end=_day(request.GET.get("to")),
    )
    return period, compare


def _period_page(request: HttpRequest, *, access: Any, layout: LiveLayout, template: str, **extra: Any) -> HttpResponse:
    context: dict[str, Any] = {
        "tenant": tenant_get(access=access),
        "layout": layout,
        "ranges": list(analysis.RANGE_LABELS.items()),
        "range": request.GET.get("range", "today"),
        "compare": request.GET.get("compare", ""),
        "first_day": request.GET.get("from", ""),
        "last_day": request.GET.get("to", ""),
        **extra,
    }
    try:
        period, compare = _request_period(request, layout)
    except analysis.AnalysisError as exc:
        return render(request, template, {**context, "error": str(exc)}, status=400)
    data = analysis.period_analysis(access=access, layout=layout, period=period, compare=compare)
    try:
        carpet: dict[str, Any] = analysis.layout_carpet(access=access, layout=layout, period=period).as_json()
    except analysis.AnalysisError as exc:
        carpet = {"days": [], "slots": analysis.SLOTS_PER_DAY, "kw": [], "note": str(exc)}
    if context.pop("with_status", False):
        context["status_runs"] = analysis.device_status_history(access=access, layout=layout, period=period)
    return render(
        request,
        template,
        {
            **context,
            "period": period,
            "sections": layout.load_sections(),
            "analysis": data,
            "carpet": carpet,
            "export_query": request.GET.urlencode(),
        },
    )


@login_required
def device_page(request: HttpRequest, device_id: int) -> HttpResponse:
    """A device's channels: live over `/ws/devices/<id>/live`, or any period from the rollups."""
    try:
        access = request_access(request)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    try:
        layout = device_live_layout(access=access, device_id=device_id)
    except Device.DoesNotExist as exc:
        raise Http404("No such device.") from exc
    device = layout.devices[0]
    if request.GET.get("range", "live") != "live":
        return _period_page(
            request, access=access, layout=layout, template="portal/device_period.html", device=device, with_status=True
        )
    today = datetime.now(tz=UTC).astimezone(layout.tz).date()
    week = analysis.period_resolve(
        range_name="custom", tz=layout.tz, now=datetime.now(tz=UTC), start=today - timedelta(days=6), end=today
    )
    return render(
        request,
        "portal/device.html",
        {
            "tenant": tenant_get(access=access),
            "layout": layout,
            "device": device,
            "sections": layout.load_sections(),
            "ranges": list(analysis.RANGE_LABELS.items()),
            "range": "live",
            "ws_path": f"/ws/devices/{device_id}/live",
            "status_runs": analysis.device_status_history(access=access, layout=layout, period=week),
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(data: dict[str, Any], carpet: dict[str, Any], *, chart: str, channel_ids: set[int]) -> list[list[Any]]:
    tz = analysis.ZoneInfo(data["timezone"])
    stamps = [datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat() for ms in data["t"]]
    ends = [datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat() for ms in data["ends"]]
    if chart == "total":
        rows: list[list[Any]] = [["start", "end", "total_kw"]]
        rows += [[s, e, _cell(v)] for s, e, v in zip(stamps, ends, data["total_kw"], strict=True)]
        compare = data["compare"]
        if compare:
            rows.append([])
            rows.append(["compared_start", "compared_total_kw"])
            rows += [
                [datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat(), _cell(v)]
                for ms, v in zip(compare["t"], compare["total_kw"], strict=True)
            ]
        return rows
    if chart == "loads":
        loads = data["loads"]
        rows = [["start", "end", *(load["name"] for load in loads)]]
        for i, (s, e) in enumerate(zip(stamps, ends, strict=True)):
            rows.append([s, e, *(_cell(load["kw"][i]) for load in loads)])
        return rows
    if chart == "carpet":
        rows = [["day", *(f"{slot // 4:02d}:{slot % 4 * 15:02d}" for slot in range(carpet["slots"]))]]
        width = carpet["slots"]
        for i, day in enumerate(carpet["days"]):
            rows.append([day, *(_cell(v) for v in carpet["kw"][i * width : (i + 1) * width])])
        return rows
    channels = [c for c in data["channels"] if not channel_ids or c["id"] in channel_ids]
    rows = [["channel", "quantity", "unit", "start", "end", "avg"]]
    for channel in channels:
        for s, e, v in zip(stamps, ends, channel["values"], strict=True):
            if v is not None:
                rows.append([channel["id"], channel["quantity"], channel["unit"], s, e, repr(v)])
    return rows


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


CSV_CHARTS = ("total", "loads", "carpet", "channels")


def _export(request: HttpRequest, *, access: Any, layout: LiveLayout, name: str) -> HttpResponse:
    chart = request.GET.get("chart", "total")
    try:
        if chart not in CSV_CHARTS:
            raise analysis.AnalysisError(_("Export one of: %(charts)s.") % {"charts": ", ".join(CSV_CHARTS)})
        channel_ids = {int(c) for c in request.GET.get("channel", "").split(",") if c.strip().isdigit()}
        period, compare = _request_period(request, layout)
    except analysis.AnalysisError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    try:
        carpet = (
            analysis.layout_carpet(access=access, layout=layout, period=period).as_json() if chart == "carpet" else {}
        )
    except analysis.AnalysisError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    data = analysis.period_analysis(access=access, layout=layout, period=period, compare=compare)
    writer = csv.writer(_Echo())
    body = "".join(writer.writerow(row) for row in _csv_rows(data, carpet, chart=chart, channel_ids=channel_ids))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    filename = f"{name}-{chart}-{period.start.date().isoformat()}-{period.last_day.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
def facility_export(request: HttpRequest, facility_id: int) -> HttpResponse:
    """A period chart's data as CSV: the figures the chart draws."""
    try:
        access = request_access(request)
        layout = facility_live_layout(access=access, facility_id=facility_id)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    except Facility.DoesNotExist as exc:
        raise Http404("No such facility.") from exc
    return _export(request, access=access, layout=layout, name=f"facility-{facility_id}")


@login_required
def device_export(request: HttpRequest, device_id: int) -> HttpResponse:
    try:
        access = request_access(request)
        layout = device_live_layout(access=access, device_id=device_id)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    except Device.DoesNotExist as exc:
        raise Http404("No such device.") from exc
    return _export(request, access=access, layout=layout, name=f"device-{device_id}")


@login_required
def benchmark(request: HttpRequest) -> HttpResponse:
    """The park ranked per facility: kWh per m², per day, out of hours, this month against the last."""
    try:
        access = request_access(request)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    kind, tag, sort = request.GET.get("kind", ""), request.GET.get("tag", ""), request.GET.get("sort", "kwh_per_m2")
    facilities = [row.facility for row in park_rows(access=access, kind=kind, tag=tag)]
    layouts = park_live_layouts(access=access, facility_ids=[f.pk for f in facilities])
    context: dict[str, Any] = {
        "tenant": tenant_get(access=access),
        "kind": kind,
        "kinds": Facility.Kind.choices,
        "tag": tag,
        "tags": park_tags(access=access),
        "sort": sort,
        "sorts": analysis.BENCHMARK_SORTS,
    }
    try:
        rows = analysis.park_benchmark(
            access=access, layouts=layouts, facilities=facilities, now=datetime.now(tz=UTC), sort=sort
        )
    except analysis.AnalysisError as exc:
        return render(request, "portal/benchmark.html", {**context, "error": str(exc), "rows": []}, status=400)
    return render(request, "portal/benchmark.html", {**context, "rows": rows})
