"""Device events, alert rules with their persisted evaluation state, alerts and their notifications."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from devices.models import Device, Facility, Load, TenantOwned


class Severity(models.IntegerChoices):
    # The protocol's EVENT severities, so a device event and an alert rank alike.
    INFO = 0, _("Info")
    WARNING = 1, _("Warning")
    ALARM = 2, _("Alarm")
    CRITICAL = 3, _("Critical")


class Event(TenantOwned):
    """One EVENT frame a device sent: what happened, when the device says it did, and its details."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="+")
    code = models.PositiveIntegerField()
    kind = models.CharField(max_length=32, help_text="The platform's name of the code; 'device' for codes ≥ 0x100.")
    severity = models.PositiveSmallIntegerField(choices=Severity.choices)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    message = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["device", "occurred_at"], name="alerts_event_device_time"),
            models.Index(fields=["facility", "occurred_at"], name="alerts_event_facility_time"),
        ]


class Webhook(TenantOwned):
    """Where a rule's alerts are POSTed, signed with this secret (HMAC-SHA256)."""

    name = models.CharField(max_length=120)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class RuleKind(models.TextChoices):
    DEMAND_PROJECTION = "demand_projection", _("15-minute demand projection above the peak target")
    DEMAND_THRESHOLD = "demand_threshold", _("Demand above a threshold")
    DEVICE_OFFLINE = "device_offline", _("Device offline")
    TEMPERATURE = "temperature", _("Temperature outside its limit")
    DOOR_OPEN = "door_open", _("Door open")
    OUT_OF_HOURS_ENERGY = "out_of_hours_energy", _("Energy outside opening hours above a share of the day")
    BASELINE_DEVIATION = "baseline_deviation", _("A day's consumption off its baseline")


class Condition(models.TextChoices):
    SIMPLE = "simple", _("As soon as it happens")
    DURATION = "duration", _("When it lasts")
    REPEAT = "repeat", _("When it repeats")


class Schedule(models.TextChoices):
    ALWAYS = "always", _("Always")
    OPENING_HOURS = "opening_hours", _("Only during opening hours")
    OUT_OF_HOURS = "out_of_hours", _("Only outside opening hours")


class AlertRule(TenantOwned):
    """A condition on the readings (or the presence) of a facility, a load or one device."""

    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=32, choices=RuleKind.choices)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices, default=Severity.WARNING)
    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    load = models.ForeignKey(Load, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    # In the unit the kind names (kW for demand, °C for temperature; unused by door and offline rules).
    threshold = models.FloatField(null=True, blank=True)
    unit = models.CharField(max_length=8, blank=True)
    # Temperature: True alarms above the threshold (chilled ≤ +5 °C), False below it.
    above = models.BooleanField(default=True)
    condition = models.CharField(max_length=16, choices=Condition.choices, default=Condition.SIMPLE)
    duration_s = models.PositiveIntegerField(default=0, help_text="Duration condition, door and offline rules.")
    repeat_count = models.PositiveIntegerField(default=1, help_text="Readings in a row for the repeat condition.")
    schedule = models.CharField(max_length=16, choices=Schedule.choices, default=Schedule.ALWAYS)
    recipients = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    escalation_recipients = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    escalate_after_s = models.PositiveIntegerField(default=0, help_text="0: no reminders.")
    # An alert whose source stopped breaking the rule this long ago is cleared even without a reading.
    deescalate_after_s = models.PositiveIntegerField(default=0, help_text="0: cleared only by a reading.")
    webhooks = models.ManyToManyField(Webhook, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Ingest workers compare the newest of these (with the rule count) to tell whether to rebuild their lookup.
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class RuleState(models.Model):
    """A rule's memory of one source (a channel or a device): kept in the database, so restarts lose nothing."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    source = models.CharField(max_length=32)
    breach_since = models.DateTimeField(null=True, blank=True)
    streak = models.PositiveIntegerField(default=0)
    last_value = models.FloatField(null=True, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "source"], name="alerts_rulestate_one_per_source")]
        # The ingest path asks which sources of its rules are breaching: few rows, read through this index.
        indexes = [
            models.Index(
                fields=["rule"], condition=models.Q(breach_since__isnull=False), name="alerts_rulestate_breaching"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.source}"


class Alert(TenantOwned):
    class State(models.TextChoices):
        ACTIVE = "active", _("Active")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        CLEARED = "cleared", _("Cleared")

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    source = models.CharField(max_length=32)
    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    severity = models.PositiveSmallIntegerField(choices=Severity.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    message = models.CharField(max_length=255)
    value = models.FloatField(null=True, blank=True)
    raised_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One open alert per source and rule: a repeat updates it instead of raising another.
            models.UniqueConstraint(
                fields=["rule", "source"],
                condition=~models.Q(state="cleared"),
                name="alerts_alert_one_open_per_source",
            )
        ]
        indexes = [models.Index(fields=["tenant", "state"], name="alerts_alert_tenant_state")]


class AlertHistory(models.Model):
    class Action(models.TextChoices):
        RAISED = "raised", _("Raised")
        UPDATED = "updated", _("Updated")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        REMINDED = "reminded", _("Reminder sent")
        CLEARED = "cleared", _("Cleared")

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="history")
    at = models.DateTimeField()
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    comment = models.TextField(blank=True)
    value = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} {self.at:%Y-%m-%d %H:%M}"


class WebhookDelivery(models.Model):
    """One alert notification to one webhook, with each attempt's outcome: the delivery log."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=16, choices=AlertHistory.Action.choices)
    body = models.TextField()
    attempts = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.webhook_id}: {self.action} ({self.attempts} attempts)"


class NotificationPreference(TenantOwned):
    """What one user wants to be told by e-mail: the severities, the facilities (empty: all), quiet hours."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    min_severity = models.PositiveSmallIntegerField(choices=Severity.choices, default=Severity.INFO)
    facilities = models.ManyToManyField(Facility, blank=True, related_name="+")
    # Local hours of the alert's facility; start == end means no quiet hours.
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="alerts_pref_one_per_user")]


class ColdUnit(TenantOwned):
    """A cold room or cabinet: its temperature channel, its limit and alarm delay (a temperature rule)."""

    class Preset(models.TextChoices):
        CHILLED = "chilled", _("Chilled (≤ +5 °C)")
        FROZEN = "frozen", _("Frozen (≤ −18 °C)")
        CUSTOM = "custom", _("Custom limit")

    name = models.CharField(max_length=120)
    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    preset = models.CharField(max_length=16, choices=Preset.choices)
    limit_c = models.FloatField()
    alarm_delay_s = models.PositiveIntegerField(default=900)
    rule = models.OneToOneField(AlertRule, on_delete=models.PROTECT, related_name="cold_unit")

    def __str__(self) -> str:
        return self.name


class Excursion(models.Model):
    """A time the unit was above its limit long enough to alarm: start (the first warm reading), end, worst."""

    unit = models.ForeignKey(ColdUnit, on_delete=models.CASCADE, related_name="excursions")
    alert = models.OneToOneField(Alert, on_delete=models.SET_NULL, null=True, blank=True, related_name="excursion")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    worst_c = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["unit", "started_at"], name="alerts_excursion_unit_start")]

    def __str__(self) -> str:
        return f"{self.unit_id} {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


class CorrectiveAction(models.Model):
    excursion = models.ForeignKey(Excursion, on_delete=models.CASCADE, related_name="actions")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    at = models.DateTimeField()
    text = models.TextField()

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M}"
