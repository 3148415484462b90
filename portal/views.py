from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.errors import TenantAccessDenied
from accounts.selectors import access_for_user, membership_list, tenant_get
from devices.models import Facility
from devices.selectors import facility_list
from portal.access import SESSION_TENANT_KEY, request_access


@login_required
def home(request: HttpRequest) -> HttpResponse:
    try:
        access = request_access(request)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    facilities = facility_list(access=access).order_by("name")
    kind = request.GET.get("kind", "")
    tag = request.GET.get("tag", "")
    if kind:
        facilities = facilities.filter(kind=kind)
    rows = [f for f in facilities.prefetch_related("devices") if not tag or tag in (f.tags or [])]
    return render(
        request,
        "portal/home.html",
        {
            "tenant": tenant_get(access=access),
            "memberships": membership_list(user=request.user),  # type: ignore[arg-type]
            "facilities": rows,
            "kind": kind,
            "kinds": Facility.Kind.choices,
            "tag": tag,
        },
    )


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
