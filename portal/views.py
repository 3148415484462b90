from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.errors import TenantAccessDenied
from accounts.models import Tenant
from accounts.selectors import access_for_user, membership_list, tenant_get
from accounts.services import membership_enter_as_platform_admin
from devices.models import Facility
from portal.access import SESSION_TENANT_KEY, request_access
from portal.selectors import facility_live_layout, facility_totals, park_rows, park_tags


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
    totals = facility_totals(access=access, facility_ids=[r.facility.pk for r in rows], now_ms=now_ms())
    return render(
        request,
        "portal/home.html",
        {
            "tenant": tenant_get(access=access),
            "memberships": membership_list(user=request.user),  # type: ignore[arg-type]
            "rows": [(row, *totals.get(row.facility.pk, (None, None))) for row in rows],
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
        },
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
