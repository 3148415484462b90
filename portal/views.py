from __future__ import annotations

import time
from datetime import UTC, datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from accounts.errors import TenantAccessDenied
from accounts.selectors import access_for_user, membership_list, tenant_get
from devices.models import Channel, Facility
from portal.access import SESSION_TENANT_KEY, request_access
from portal.selectors import facility_live_layout, facility_totals, park_rows, park_tags
from portal.selectors import facility_quality as facility_quality_report
from readings.errors import ReadingsQueryError
from readings.services import readings_confirm


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
        },
    )


@login_required
def facility_quality(request: HttpRequest, facility_id: int) -> HttpResponse:
    """Readings outside a channel's plausible range, to confirm; and how many intervals carry each flag."""
    try:
        access = request_access(request)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    if request.method == "POST":
        form = ConfirmForm(request.POST)
        if not form.is_valid():
            return HttpResponseBadRequest(gettext("The confirmation is malformed."))
        try:
            readings_confirm(
                access=access,
                channel_id=form.cleaned_data["channel"],
                start=datetime.fromtimestamp(form.cleaned_data["start_ms"] / 1000, tz=UTC),
                end=datetime.fromtimestamp(form.cleaned_data["end_ms"] / 1000, tz=UTC),
                confirmed_by=request.user.get_username(),
            )
        except Channel.DoesNotExist as exc:
            raise Http404(gettext("No such channel.")) from exc
        except TenantAccessDenied:
            return render(request, "portal/no_tenant.html", status=403)
        except ReadingsQueryError as exc:
            return HttpResponseBadRequest(str(exc))
        messages.success(request, gettext("Confirmed. The figures are recomputed within seconds."))
        return redirect("portal:facility_quality", facility_id=facility_id)
    try:
        report = facility_quality_report(access=access, facility_id=facility_id, now_ms=now_ms())
    except Facility.DoesNotExist as exc:
        raise Http404(gettext("No such facility.")) from exc
    return render(
        request,
        "portal/quality.html",
        {
            "tenant": tenant_get(access=access),
            "facility_id": facility_id,
            "facility_name": report.facility_name,
            "report": report,
            "can_confirm": access.manages_facility(facility_id),
        },
    )


class ConfirmForm(forms.Form):
    channel = forms.IntegerField(min_value=1, max_value=2**63 - 1)
    start_ms = forms.IntegerField(min_value=0, max_value=2**47)
    end_ms = forms.IntegerField(min_value=0, max_value=2**47)


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
