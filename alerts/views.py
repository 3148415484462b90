"""Portal pages of alerts: the alert list with acknowledgement, the event timeline, the rule editor.

Each page calls the same selectors and services as /api/v1/, so what the portal shows is the API's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from alerts import haccp, selectors, services
from alerts.errors import AlertsError
from alerts.models import Alert, AlertRule, ColdUnit, Condition, Excursion, RuleKind, Schedule, Severity, Webhook
from devices.models import Facility
from devices.selectors import device_list, facility_list
from portal.access import request_access

PAGE = 200


def _access(request: HttpRequest) -> Access:
    try:
        return request_access(request)
    except TenantAccessDenied as exc:
        raise Http404(_("You are not a member of any tenant.")) from exc


def _int(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and len(raw) < 19 else None


@login_required
def alert_list_page(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    view = "history" if request.GET.get("view") == "history" else "open"
    alerts = selectors.alert_list(access=access)
    alerts = (
        alerts.filter(state=Alert.State.CLEARED) if view == "history" else alerts.exclude(state=Alert.State.CLEARED)
    )
    facility_id, severity = _int(request.GET.get("facility")), _int(request.GET.get("severity"))
    if facility_id:
        alerts = alerts.filter(facility_id=facility_id)
    if severity is not None:
        alerts = alerts.filter(severity__gte=severity)
    context: dict[str, Any] = {
        "alerts": list(alerts.order_by("-raised_at")[:PAGE]),
        "view": view,
        "facilities": facility_list(access=access).order_by("name"),
        "facility_id": facility_id,
        "severity": severity,
        "severities": Severity.choices,
    }
    return render(request, "alerts/alerts.html", context)


@login_required
@require_POST
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    access = _access(request)
    try:
        services.alert_acknowledge(access=access, alert_id=alert_id, comment=request.POST.get("comment", "")[:2000])
    except Alert.DoesNotExist as exc:
        raise Http404 from exc
    except AlertsError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Alert acknowledged."))
    return redirect("alerts:alerts")


@login_required
def event_timeline_page(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    events = selectors.event_list(access=access)
    facility_id, device_id = _int(request.GET.get("facility")), _int(request.GET.get("device"))
    if facility_id:
        events = events.filter(facility_id=facility_id)
    if device_id:
        events = events.filter(device_id=device_id)
    context = {
        "events": list(events.order_by("-occurred_at", "-id")[:PAGE]),
        "facilities": facility_list(access=access).order_by("name"),
        "facility_id": facility_id,
        "device_id": device_id,
    }
    return render(request, "alerts/events.html", context)


class RuleForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    kind = forms.ChoiceField(label=gettext_lazy("Kind"), choices=RuleKind.choices)
    severity = forms.TypedChoiceField(
        label=gettext_lazy("Severity"), choices=Severity.choices, coerce=int, initial=Severity.WARNING
    )
    device = forms.TypedChoiceField(label=gettext_lazy("Device"), coerce=int, required=False, empty_value=None)
    facility = forms.TypedChoiceField(label=gettext_lazy("Facility"), coerce=int, required=False, empty_value=None)
    threshold = forms.FloatField(label=gettext_lazy("Threshold"), required=False)
    unit = forms.ChoiceField(
        label=gettext_lazy("Unit"),
        choices=[("", "—"), ("kW", "kW"), ("W", "W"), ("°C", "°C"), ("%", "%")],
        required=False,
    )
    condition = forms.ChoiceField(label=gettext_lazy("Condition"), choices=Condition.choices)
    duration_s = forms.IntegerField(label=gettext_lazy("Duration (seconds)"), min_value=0, initial=0)
    repeat_count = forms.IntegerField(label=gettext_lazy("Readings in a row"), min_value=1, initial=1)
    schedule = forms.ChoiceField(label=gettext_lazy("Schedule"), choices=Schedule.choices)
    escalate_after_s = forms.IntegerField(
        label=gettext_lazy("Remind after (seconds, 0: never)"), min_value=0, initial=0
    )

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        none: list[tuple[Any, str]] = [("", "—")]
        self.fields["device"].choices = none + [  # type: ignore[attr-defined]
            (d.pk, d.name or d.serial) for d in device_list(access=access).order_by("serial")
        ]
        self.fields["facility"].choices = none + [  # type: ignore[attr-defined]
            (f.pk, f.name) for f in facility_list(access=access).order_by("name")
        ]


def _rule_spec(data: dict[str, Any], recipients: list[int]) -> services.RuleSpec:
    return services.RuleSpec(
        name=data["name"],
        kind=data["kind"],
        severity=data["severity"],
        device_id=data["device"],
        facility_id=data["facility"] if data["device"] is None else None,
        threshold=data["threshold"],
        unit=data["unit"] or "",
        condition=data["condition"],
        duration_s=data["duration_s"],
        repeat_count=data["repeat_count"],
        schedule=data["schedule"],
        escalate_after_s=data["escalate_after_s"],
        recipient_ids=recipients,
    )


def _rule_initial(rule: AlertRule) -> dict[str, Any]:
    initial = {name: getattr(rule, name) for name in RuleForm.base_fields if hasattr(rule, name)}
    initial.update(device=rule.device_id, facility=rule.facility_id)
    return initial


@login_required
def rule_list_page(request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
    """The rules and the editor: a new rule, or (with an id) one rule to change."""
    access = _access(request)
    rules = selectors.alert_rule_list(access=access).order_by("name")
    editing = None
    if rule_id is not None:
        editing = rules.filter(pk=rule_id).first()
        if editing is None:
            raise Http404
    initial = _rule_initial(editing) if editing else None
    form = RuleForm(request.POST or None, access=access, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            if editing is None:
                mine = [request.user.pk] if request.user.pk else []
                services.alert_rule_create(access=access, spec=_rule_spec(form.cleaned_data, mine))
            else:
                kept = list(editing.recipients.values_list("pk", flat=True))
                services.alert_rule_update(access=access, rule=editing, spec=_rule_spec(form.cleaned_data, kept))
        except AlertsError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Rule saved."))
            return redirect("alerts:rules")
    return render(request, "alerts/rules.html", {"rules": rules, "form": form, "editing": editing})


@login_required
@require_POST
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    access = _access(request)
    rule = selectors.alert_rule_list(access=access).filter(pk=rule_id).first()
    if rule is None:
        raise Http404
    try:
        services.alert_rule_delete(access=access, rule=rule)
    except AlertsError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Rule deleted."))
    return redirect("alerts:rules")


class WebhookForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    url = forms.CharField(label=gettext_lazy("URL (https)"), max_length=500)


@login_required
def webhook_page(request: HttpRequest) -> HttpResponse:
    """Webhooks: add one (its secret is shown once), the list, and the delivery log."""
    access = _access(request)
    form = WebhookForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = services.webhook_create(
                access=access, name=form.cleaned_data["name"], url=form.cleaned_data["url"]
            )
        except AlertsError as exc:
            form.add_error(None, str(exc))
        else:
            form = WebhookForm()
    context = {
        "webhooks": selectors.webhook_list(access=access).order_by("name"),
        "deliveries": selectors.webhook_delivery_list(access=access).order_by("-created_at", "-id")[:PAGE],
        "form": form,
        "created": created,
    }
    return render(request, "alerts/webhooks.html", context)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, webhook_id: int) -> HttpResponse:
    access = _access(request)
    try:
        services.webhook_delete(access=access, webhook_id=webhook_id)
    except Webhook.DoesNotExist as exc:
        raise Http404 from exc
    except AlertsError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Webhook deleted."))
    return redirect("alerts:webhooks")


class PreferenceForm(forms.Form):
    min_severity = forms.TypedChoiceField(
        label=gettext_lazy("E-mail me from this severity"), choices=Severity.choices, coerce=int
    )
    facilities = forms.TypedMultipleChoiceField(
        label=gettext_lazy("Only these facilities (none: all)"), coerce=int, required=False
    )
    quiet_start = forms.TimeField(label=gettext_lazy("Quiet from (local time)"), required=False)
    quiet_end = forms.TimeField(label=gettext_lazy("Quiet until"), required=False)

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["facilities"].choices = [  # type: ignore[attr-defined]
            (f.pk, f.name) for f in facility_list(access=access).order_by("name")
        ]


@login_required
def preference_page(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    current = selectors.notification_preference_of(access=access)
    initial = (
        {
            "min_severity": current.min_severity,
            "facilities": [f.pk for f in current.facilities.all()],
            "quiet_start": current.quiet_start,
            "quiet_end": current.quiet_end,
        }
        if current
        else {"min_severity": Severity.INFO}
    )
    form = PreferenceForm(request.POST or None, access=access, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.notification_preference_set(
                access=access,
                user_id=access.user_id,
                min_severity=data["min_severity"],
                facility_ids=data["facilities"],
                quiet_start=data["quiet_start"],
                quiet_end=data["quiet_end"],
            )
        except AlertsError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Preferences saved."))
            return redirect("alerts:preferences")
    return render(request, "alerts/preferences.html", {"form": form})


class ColdUnitForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    device = forms.TypedChoiceField(label=gettext_lazy("Temperature sensor (device)"), coerce=int)
    preset = forms.ChoiceField(label=gettext_lazy("Limit"), choices=ColdUnit.Preset.choices)
    limit_c = forms.FloatField(label=gettext_lazy("Custom limit (°C)"), required=False)
    alarm_delay_s = forms.IntegerField(label=gettext_lazy("Alarm delay (seconds)"), min_value=0, initial=900)

    def __init__(self, *args: Any, access: Access, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["device"].choices = [  # type: ignore[attr-defined]
            (d.pk, d.name or d.serial) for d in device_list(access=access).order_by("serial")
        ]
        if editing:  # the sensor stays: a new sensor is a new unit
            del self.fields["device"]


@login_required
def cold_unit_page(request: HttpRequest, unit_id: int | None = None) -> HttpResponse:
    """Cold rooms and cabinets: add one with a preset or custom limit, or change one's limit and delay."""
    access = _access(request)
    units = selectors.cold_unit_list(access=access).order_by("facility__name", "name")
    editing = None
    if unit_id is not None:
        editing = units.filter(pk=unit_id).first()
        if editing is None:
            raise Http404
    initial = (
        {
            "name": editing.name,
            "preset": editing.preset,
            "limit_c": editing.limit_c,
            "alarm_delay_s": editing.alarm_delay_s,
        }
        if editing
        else None
    )
    form = ColdUnitForm(request.POST or None, access=access, editing=editing is not None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        values = {
            "name": data["name"],
            "preset": data["preset"],
            "limit_c": data["limit_c"],
            "alarm_delay_s": data["alarm_delay_s"],
        }
        try:
            if editing is None:
                services.cold_unit_create(access=access, device_id=data["device"], **values)
            else:
                services.cold_unit_update(access=access, unit=editing, **values)
        except AlertsError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Cold unit saved."))
            return redirect("alerts:cold_units")
    return render(request, "alerts/cold_units.html", {"units": units, "form": form, "editing": editing})


def _month_of(raw: str, now: dt.datetime) -> tuple[int, int]:
    try:
        year, month = (int(part) for part in raw.split("-"))
    except ValueError:
        return now.year, now.month
    return year, month


@login_required
def haccp_page(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    facilities = list(facility_list(access=access).order_by("name"))
    facility_id = _int(request.GET.get("facility")) or (facilities[0].pk if facilities else None)
    now = timezone.now()
    year, month = _month_of(request.GET.get("month", ""), now)
    report = None
    if facility_id is not None:
        try:
            report = haccp.haccp_report(access=access, facility_id=facility_id, year=year, month=month)
        except (Facility.DoesNotExist, AlertsError) as exc:
            raise Http404(str(exc)) from exc
    context = {"facilities": facilities, "report": report, "month": f"{year}-{month:02d}"}
    return render(request, "alerts/haccp.html", context)


@login_required
def haccp_export(request: HttpRequest, facility_id: int, month: str, fmt: str) -> HttpResponse:
    access = _access(request)
    if fmt not in ("csv", "pdf"):
        raise Http404
    year, number = _month_of(month, timezone.now())
    try:
        report = haccp.haccp_report(access=access, facility_id=facility_id, year=year, month=number)
    except (Facility.DoesNotExist, AlertsError) as exc:
        raise Http404(str(exc)) from exc
    if fmt == "pdf":
        response = HttpResponse(haccp.haccp_pdf(report), content_type="application/pdf")
    else:
        response = HttpResponse(haccp.haccp_csv(report), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="haccp-{facility_id}-{report.label}.{fmt}"'
    return response


@login_required
@require_POST
def corrective_action(request: HttpRequest, excursion_id: int) -> HttpResponse:
    access = _access(request)
    try:
        action = services.corrective_action_record(
            access=access, excursion_id=excursion_id, text=request.POST.get("text", "")[:2000]
        )
    except Excursion.DoesNotExist as exc:
        raise Http404 from exc
    except AlertsError as exc:
        messages.error(request, str(exc))
        return redirect("alerts:haccp")
    messages.success(request, _("Corrective action recorded."))
    unit = action.excursion.unit
    return redirect(f"{reverse('alerts:haccp')}?facility={unit.facility_id}&month={action.excursion.started_at:%Y-%m}")
