"""Platform admins reach events, rules, alerts and webhook deliveries here."""

from __future__ import annotations

from django.contrib import admin

from alerts.models import (
    Alert,
    AlertHistory,
    AlertRule,
    ColdUnit,
    CorrectiveAction,
    Event,
    Excursion,
    NotificationPreference,
    Webhook,
    WebhookDelivery,
)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["occurred_at", "kind", "code", "severity", "device", "facility", "tenant"]
    list_filter = ["kind", "severity"]
    search_fields = ["device__serial", "message"]
    raw_id_fields = ["device", "facility", "tenant"]
    date_hierarchy = "occurred_at"


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "kind", "severity", "facility", "load", "device", "enabled", "tenant"]
    list_filter = ["kind", "severity", "enabled"]
    search_fields = ["name"]
    raw_id_fields = ["facility", "load", "device", "tenant"]
    filter_horizontal = ["recipients", "escalation_recipients", "webhooks"]


class HistoryInline(admin.TabularInline):  # type: ignore[type-arg]
    model = AlertHistory
    extra = 0
    readonly_fields = ["at", "action", "actor", "comment", "value"]
    can_delete = False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["raised_at", "rule", "source", "severity", "state", "facility", "tenant"]
    list_filter = ["state", "severity"]
    search_fields = ["message", "rule__name"]
    raw_id_fields = ["rule", "facility", "device", "tenant", "acknowledged_by"]
    inlines = [HistoryInline]


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "url", "tenant", "created_at"]
    raw_id_fields = ["tenant"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["created_at", "webhook", "action", "attempts", "status_code", "delivered_at", "error"]
    list_filter = ["action"]
    raw_id_fields = ["webhook", "alert"]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["user", "tenant", "min_severity", "quiet_start", "quiet_end"]
    raw_id_fields = ["user", "tenant"]


@admin.register(ColdUnit)
class ColdUnitAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "preset", "limit_c", "alarm_delay_s", "facility", "tenant"]
    raw_id_fields = ["facility", "device", "rule", "tenant"]


class CorrectiveActionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CorrectiveAction
    extra = 0
    raw_id_fields = ["by"]


@admin.register(Excursion)
class ExcursionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["unit", "started_at", "ended_at", "worst_c"]
    raw_id_fields = ["unit", "alert"]
    inlines = [CorrectiveActionInline]
