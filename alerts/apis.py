"""Alerts under /api/v1/: events, alerts and acknowledgements, rules and webhooks (`alerts:read`/`alerts:write`)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from alerts import selectors, services
from alerts.models import (
    Alert,
    AlertRule,
    ColdUnit,
    Condition,
    Event,
    NotificationPreference,
    RuleKind,
    Schedule,
    Severity,
    Webhook,
)
from integrations.api.fields import OffsetDateTimeField
from integrations.api.views import MAX_ID, IdFilter, TenantApiView
from integrations.scopes import ALERTS_READ, ALERTS_WRITE


class AlertsApi(TenantApiView):
    read_scope = ALERTS_READ
    write_scope = ALERTS_WRITE


# --- Events ---------------------------------------------------------------------------------------


class EventOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    occurred_at = OffsetDateTimeField()
    received_at = OffsetDateTimeField()
    severity = serializers.CharField(source="get_severity_display")

    class Meta:
        model = Event
        fields = ["id", "device", "facility", "code", "kind", "severity", "occurred_at", "received_at", "message"]


class EventFilter(django_filters.FilterSet):
    device = IdFilter(field_name="device_id")
    facility = IdFilter(field_name="facility_id")
    since = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["kind", "severity"]


class EventListApi(AlertsApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Event
    serializer_class = EventOutput
    filterset_class = EventFilter

    def get_queryset(self) -> QuerySet[Event]:
        return self.empty() if self.is_schema_generation else selectors.event_list(access=self.access)


# --- Alerts ---------------------------------------------------------------------------------------


class AlertOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    raised_at = OffsetDateTimeField()
    updated_at = OffsetDateTimeField()
    acknowledged_at = OffsetDateTimeField(allow_null=True)
    cleared_at = OffsetDateTimeField(allow_null=True)
    severity = serializers.CharField(source="get_severity_display")
    rule_name = serializers.CharField(source="rule.name")
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", allow_null=True, default=None)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_name",
            "source",
            "facility",
            "device",
            "severity",
            "state",
            "message",
            "value",
            "raised_at",
            "updated_at",
            "acknowledged_by",
            "acknowledged_at",
            "comment",
            "cleared_at",
        ]


class AlertFilter(django_filters.FilterSet):
    facility = IdFilter(field_name="facility_id")
    device = IdFilter(field_name="device_id")
    rule = IdFilter(field_name="rule_id")

    class Meta:
        model = Alert
        fields = ["state", "severity"]


class AlertListApi(AlertsApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Alert
    serializer_class = AlertOutput
    filterset_class = AlertFilter

    def get_queryset(self) -> QuerySet[Alert]:
        return self.empty() if self.is_schema_generation else selectors.alert_list(access=self.access)


class AlertDetailApi(AlertsApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Alert
    serializer_class = AlertOutput

    def get_queryset(self) -> QuerySet[Alert]:
        return self.empty() if self.is_schema_generation else selectors.alert_list(access=self.access)


class AcknowledgeInput(serializers.Serializer):  # type: ignore[type-arg]
    comment = serializers.CharField(max_length=2000, allow_blank=True, default="")


class AlertAcknowledgeApi(AlertsApi):
    model = Alert
    serializer_class = AlertOutput

    @extend_schema(request=AcknowledgeInput, responses={200: AlertOutput, 400: OpenApiResponse()})
    def post(self, request: Request, pk: int) -> Response:
        if not 0 < int(pk) <= MAX_ID:
            raise Alert.DoesNotExist
        data = self.parse(AcknowledgeInput, request.data)
        alert = services.alert_acknowledge(access=self.access, alert_id=int(pk), comment=data["comment"])
        return Response(AlertOutput(selectors.alert_list(access=self.access).get(pk=alert.pk)).data)


# --- Rules ----------------------------------------------------------------------------------------


class RuleOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    created_at = OffsetDateTimeField()
    recipients = serializers.PrimaryKeyRelatedField(many=True, read_only=True)  # type: ignore[var-annotated]
    escalation_recipients = serializers.PrimaryKeyRelatedField(many=True, read_only=True)  # type: ignore[var-annotated]
    webhooks = serializers.PrimaryKeyRelatedField(many=True, read_only=True)  # type: ignore[var-annotated]

    class Meta:
        model = AlertRule
        fields = [
            "id",
            *services.RULE_FIELDS,
            "facility",
            "load",
            "device",
            "recipients",
            "escalation_recipients",
            "webhooks",
            "created_at",
        ]


class RuleInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    kind = serializers.ChoiceField(choices=RuleKind.choices)
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.WARNING)
    facility = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True)
    load = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True)
    device = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True)
    threshold = serializers.FloatField(required=False, allow_null=True, help_text="In `unit`: kW/W or °C")
    unit = serializers.CharField(max_length=8, required=False, default="", allow_blank=True)
    above = serializers.BooleanField(default=True)
    condition = serializers.ChoiceField(choices=Condition.choices, default=Condition.SIMPLE)
    duration_s = serializers.IntegerField(min_value=0, max_value=services.MAX_DURATION_S, default=0)
    repeat_count = serializers.IntegerField(min_value=1, max_value=services.MAX_REPEAT, default=1)
    schedule = serializers.ChoiceField(choices=Schedule.choices, default=Schedule.ALWAYS)
    recipients = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=100, default=list
    )
    escalation_recipients = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=100, default=list
    )
    escalate_after_s = serializers.IntegerField(min_value=0, max_value=services.MAX_DURATION_S, default=0)
    deescalate_after_s = serializers.IntegerField(min_value=0, max_value=services.MAX_DURATION_S, default=0)
    webhooks = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=20, default=list
    )
    enabled = serializers.BooleanField(default=True)


RENAMED = {
    "facility": "facility_id",
    "load": "load_id",
    "device": "device_id",
    "recipients": "recipient_ids",
    "escalation_recipients": "escalation_recipient_ids",
    "webhooks": "webhook_ids",
}


def _spec_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {RENAMED.get(key, key): value for key, value in data.items()}


class AlertRuleListApi(AlertsApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = AlertRule
    serializer_class = RuleOutput

    def get_queryset(self) -> QuerySet[AlertRule]:
        return self.empty() if self.is_schema_generation else selectors.alert_rule_list(access=self.access)

    @extend_schema(request=RuleInput, responses={201: RuleOutput, 400: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        data = self.parse(RuleInput, request.data)
        rule = services.alert_rule_create(access=self.access, spec=services.RuleSpec(**_spec_fields(data)))
        return Response(RuleOutput(rule).data, status=status.HTTP_201_CREATED)


class AlertRuleDetailApi(AlertsApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = AlertRule
    serializer_class = RuleOutput

    def get_queryset(self) -> QuerySet[AlertRule]:
        return self.empty() if self.is_schema_generation else selectors.alert_rule_list(access=self.access)

    @extend_schema(request=RuleInput, responses={200: RuleOutput, 400: OpenApiResponse()})
    def patch(self, request: Request, pk: int) -> Response:
        rule = self.get_object()
        data = self.parse(RuleInput, request.data, partial=True)
        spec = services.spec_of(rule, **_spec_fields(data))
        rule = services.alert_rule_update(access=self.access, rule=rule, spec=spec)
        return Response(RuleOutput(rule).data)

    def delete(self, request: Request, pk: int) -> Response:
        services.alert_rule_delete(access=self.access, rule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Webhooks -------------------------------------------------------------------------------------


class WebhookOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    created_at = OffsetDateTimeField()

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "created_at"]


class WebhookCreated(WebhookOutput):
    class Meta(WebhookOutput.Meta):
        fields = [*WebhookOutput.Meta.fields, "secret"]


class WebhookInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    url = serializers.CharField(max_length=500)


class WebhookListApi(AlertsApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Webhook
    serializer_class = WebhookOutput

    def get_queryset(self) -> QuerySet[Webhook]:
        return self.empty() if self.is_schema_generation else selectors.webhook_list(access=self.access)

    @extend_schema(request=WebhookInput, responses={201: WebhookCreated, 400: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        data = self.parse(WebhookInput, request.data)
        webhook = services.webhook_create(access=self.access, name=data["name"], url=data["url"])
        # The secret is shown once, here: receivers check each delivery's signature with it.
        return Response(WebhookCreated(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(AlertsApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Webhook
    serializer_class = WebhookOutput

    def get_queryset(self) -> QuerySet[Webhook]:
        return self.empty() if self.is_schema_generation else selectors.webhook_list(access=self.access)

    def delete(self, request: Request, pk: int) -> Response:
        services.webhook_delete(access=self.access, webhook_id=self.get_object().pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Notification preferences ---------------------------------------------------------------------


class PreferenceOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    facilities = serializers.PrimaryKeyRelatedField(many=True, read_only=True)  # type: ignore[var-annotated]

    class Meta:
        model = NotificationPreference
        fields = ["min_severity", "facilities", "quiet_start", "quiet_end"]


class PreferenceInput(serializers.Serializer):  # type: ignore[type-arg]
    min_severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.INFO)
    facilities = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=500, default=list
    )
    quiet_start = serializers.TimeField(required=False, allow_null=True, default=None)
    quiet_end = serializers.TimeField(required=False, allow_null=True, default=None)


class NotificationPreferenceApi(AlertsApi):
    """The signed-in user's own e-mail preferences; a token without a user has none."""

    serializer_class = PreferenceOutput

    def _current(self) -> dict[str, Any]:
        preference = selectors.notification_preference_of(access=self.access)
        if preference is None:
            return {"min_severity": Severity.INFO, "facilities": [], "quiet_start": None, "quiet_end": None}
        return dict(PreferenceOutput(preference).data)

    @extend_schema(responses={200: PreferenceOutput})
    def get(self, request: Request) -> Response:
        return Response(self._current())

    @extend_schema(request=PreferenceInput, responses={200: PreferenceOutput, 400: OpenApiResponse()})
    def put(self, request: Request) -> Response:
        data = self.parse(PreferenceInput, request.data)
        services.notification_preference_set(
            access=self.access,
            user_id=self.access.user_id,
            min_severity=data["min_severity"],
            facility_ids=data["facilities"],
            quiet_start=data["quiet_start"],
            quiet_end=data["quiet_end"],
        )
        return Response(self._current())


# --- Cold units -----------------------------------------------------------------------------------


class ColdUnitOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = ColdUnit
        fields = ["id", "name", "facility", "device", "preset", "limit_c", "alarm_delay_s", "rule"]


class ColdUnitInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    device = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    preset = serializers.ChoiceField(choices=ColdUnit.Preset.choices)
    limit_c = serializers.FloatField(required=False, allow_null=True, default=None, help_text="For the custom preset")
    alarm_delay_s = serializers.IntegerField(min_value=0, max_value=services.MAX_DURATION_S, default=900)


class ColdUnitListApi(AlertsApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = ColdUnit
    serializer_class = ColdUnitOutput

    def get_queryset(self) -> QuerySet[ColdUnit]:
        return self.empty() if self.is_schema_generation else selectors.cold_unit_list(access=self.access)

    @extend_schema(request=ColdUnitInput, responses={201: ColdUnitOutput, 400: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        data = self.parse(ColdUnitInput, request.data)
        unit = services.cold_unit_create(
            access=self.access,
            device_id=data["device"],
            name=data["name"],
            preset=data["preset"],
            limit_c=data["limit_c"],
            alarm_delay_s=data["alarm_delay_s"],
        )
        return Response(ColdUnitOutput(unit).data, status=status.HTTP_201_CREATED)


class ColdUnitDetailApi(AlertsApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = ColdUnit
    serializer_class = ColdUnitOutput

    def get_queryset(self) -> QuerySet[ColdUnit]:
        return self.empty() if self.is_schema_generation else selectors.cold_unit_list(access=self.access)

    @extend_schema(request=ColdUnitInput, responses={200: ColdUnitOutput, 400: OpenApiResponse()})
    def patch(self, request: Request, pk: int) -> Response:
        unit = self.get_object()
        data = self.parse(ColdUnitInput, request.data, partial=True)
        current = {
            "name": unit.name,
            "preset": unit.preset,
            "limit_c": unit.limit_c,
            "alarm_delay_s": unit.alarm_delay_s,
        }
        current.update({key: value for key, value in data.items() if key in current})
        unit = services.cold_unit_update(access=self.access, unit=unit, **current)
        return Response(ColdUnitOutput(unit).data)
