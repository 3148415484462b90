from __future__ import annotations

import time
from datetime import UTC, datetime

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.errors import TenantAccessDenied
from accounts.models import Tenant
from accounts.selectors import access_for_user, membership_list, tenant_get
from accounts.services import membership_enter_as_platform_admin
from devices.models import Channel, Facility
from devices.selectors import facility_get
from portal.access import SESSION_TENANT_KEY, request_access
from portal.analysis_views import period_page, picker_context
from portal.selectors import (
    facility_live_layout,
    facility_totals,
    park_current_kw,
    park_live_layouts,
    park_rows,
    park_tags,
)
from portal.selectors import facility_quality as facility_quality_report
from portal.services import LanguageError, user_language_set
from readings.errors import ReadingsQueryError
from readings.services import readings_confirm


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
        return period_page(request, access=access, layout=layout)
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
            **picker_context(request),
            "peak_target_kw": facility_get(access=access, facility_id=facility_id).peak_target_kw,
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
