from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.errors import TenantAccessDenied
from accounts.selectors import access_for_user, membership_list, tenant_get
from devices.models import Facility
from portal.access import SESSION_TENANT_KEY, request_access
from portal.selectors import facility_live_layout, facility_totals, park_rows, park_tags


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The facility park overview: one row per facility, updated live over `/ws/facilities/live`."""
    try:
        access = request_access(request)
    except TenantAccessDenied:
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
            "peak_target_kw": Facility.objects.filter(pk=facility_id).values_list("peak_target_kw", flat=True).first(),
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
