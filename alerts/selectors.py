"""Reads of the alerts domain; every one takes an `Access`, so a tenant filter cannot be forgotten."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.access import Access
from alerts.models import Alert, AlertRule, ColdUnit, Event, NotificationPreference, Webhook, WebhookDelivery


def _facilities(qs: QuerySet, access: Access, field: str = "facility_id") -> QuerySet:  # type: ignore[type-arg]
    qs = qs.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(**{f"{field}__in": access.facility_ids})
    return qs


def event_list(*, access: Access) -> QuerySet[Event]:
    return _facilities(Event.objects.select_related("device", "facility"), access)


def alert_list(*, access: Access) -> QuerySet[Alert]:
    return _facilities(Alert.objects.select_related("rule", "facility", "device", "acknowledged_by"), access)


def alert_open_count(*, access: Access) -> int:
    return alert_list(access=access).exclude(state=Alert.State.CLEARED).count()


def alert_rule_list(*, access: Access) -> QuerySet[AlertRule]:
    qs = AlertRule.objects.filter(tenant_id=access.tenant_id).select_related("facility", "load", "device")
    if access.facility_ids is not None:
        seen = access.facility_ids
        qs = qs.filter(Q(facility_id__in=seen) | Q(load__facility_id__in=seen) | Q(device__facility_id__in=seen))
    return qs.prefetch_related("recipients", "escalation_recipients", "webhooks")


def webhook_list(*, access: Access) -> QuerySet[Webhook]:
    return Webhook.objects.filter(tenant_id=access.tenant_id)


def webhook_delivery_list(*, access: Access) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(webhook__tenant_id=access.tenant_id).select_related("webhook")


def notification_preference_of(*, access: Access) -> NotificationPreference | None:
    """The signed-in member's own preferences (None: every severity, every facility, no quiet hours)."""
    if access.user_id is None:
        return None
    return (
        NotificationPreference.objects.filter(tenant_id=access.tenant_id, user_id=access.user_id)
        .prefetch_related("facilities")
        .first()
    )


def cold_unit_list(*, access: Access) -> QuerySet[ColdUnit]:
    return _facilities(ColdUnit.objects.select_related("facility", "device", "rule"), access)
