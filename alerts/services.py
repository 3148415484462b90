"""Writes of the alerts domain: device events, rules, webhooks, preferences and the alert lifecycle."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.access import Access
from accounts.models import Membership, Role
from alerts import evaluation_cache
from alerts.errors import AlertsError
from alerts.events import event_kind
from alerts.models import (
    Alert,
    AlertHistory,
    AlertRule,
    ColdUnit,
    Condition,
    CorrectiveAction,
    Excursion,
    NotificationPreference,
    RuleKind,
    Schedule,
    Severity,
    Webhook,
)
from alerts.webhooks import webhook_url_check
from devices.models import Device, Facility, Load

# An event stamped before 2000 or this far ahead is a device clock gone wrong: stored at its arrival time.
# Older times are kept: a device that was offline reports what happened meanwhile.
EVENT_CLOCK_SLACK = dt.timedelta(days=1)
EARLIEST_EVENT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_MESSAGE = 255
logger = logging.getLogger(__name__)

# --- Events ---------------------------------------------------------------------------------------


def event_record(
    *, tenant_id: int, device_id: int, facility_id: int, code: int, severity: int, time_ms: int, message: str
) -> int:
    """Store one EVENT frame a device sent; returns the event's id."""
    if not 0 <= code <= 0xFFF or severity not in Severity.values:
        raise AlertsError(f"EVENT code {code} / severity {severity} is undefined")
    now = timezone.now()
    occurred = dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.UTC)
    if occurred < EARLIEST_EVENT or occurred > now + EVENT_CLOCK_SLACK:
        occurred = now
    from alerts.models import Event

    event = Event.objects.create(
        tenant_id=tenant_id,
        device_id=device_id,
        facility_id=facility_id,
        code=code,
        kind=event_kind(code),
        severity=severity,
        occurred_at=occurred,
        message=message[:MAX_MESSAGE],
    )
    if event.kind in DOOR_EVENT_STATE:
        # Imported here: the evaluation builds on these services.
        from alerts.evaluation import door_event_evaluate

        try:
            door_event_evaluate(device_id=device_id, state=DOOR_EVENT_STATE[event.kind], at=occurred)
        except Exception:  # noqa: BLE001 - the event is stored; the door's next event or reading evaluates again
            logger.exception("door rules could not be evaluated for event %s", event.pk)
    return event.pk


# A door event is the door's state from that instant: 1 open, 0 closed (as the door channel reads).
DOOR_EVENT_STATE = {"door_open": 1.0, "door_closed": 0.0}


# --- Rules ----------------------------------------------------------------------------------------

# Each analogue kind's threshold unit, and the factor that turns an accepted unit into it.
THRESHOLD_UNITS: dict[str, dict[str, float]] = {
    RuleKind.DEMAND_THRESHOLD: {"kW": 1.0, "W": 0.001},
    RuleKind.TEMPERATURE: {"°C": 1.0},
    # A share of the day's energy (out of hours) or a deviation from the baseline, either way.
    RuleKind.OUT_OF_HOURS_ENERGY: {"%": 1.0},
    RuleKind.BASELINE_DEVIATION: {"%": 1.0},
}
# Kinds judged once a day on beat, from the facility's rollups, after the day ends in its time zone.
DAILY_KINDS = {RuleKind.OUT_OF_HOURS_ENERGY, RuleKind.BASELINE_DEVIATION}
# Kinds that need a duration: a door is open for N minutes, a device offline for N minutes.
NEEDS_DURATION = {RuleKind.DOOR_OPEN, RuleKind.DEVICE_OFFLINE}
MAX_DURATION_S = 7 * 86_400
MAX_REPEAT = 10_000

RULE_FIELDS = (
    "name",
    "kind",
    "severity",
    "threshold",
    "unit",
    "above",
    "condition",
    "duration_s",
    "repeat_count",
    "schedule",
    "escalate_after_s",
    "deescalate_after_s",
    "enabled",
)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    kind: str
    severity: int = Severity.WARNING
    facility_id: int | None = None
    load_id: int | None = None
    device_id: int | None = None
    threshold: float | None = None
    unit: str = ""
    above: bool = True
    condition: str = Condition.SIMPLE
    duration_s: int = 0
    repeat_count: int = 1
    schedule: str = Schedule.ALWAYS
    recipient_ids: Sequence[int] = ()
    escalation_recipient_ids: Sequence[int] = ()
    escalate_after_s: int = 0
    deescalate_after_s: int = 0
    webhook_ids: Sequence[int] = ()
    enabled: bool = True


def _scope(access: Access, spec: RuleSpec) -> tuple[Facility | None, Load | None, Device | None]:
    named = [x is not None for x in (spec.facility_id, spec.load_id, spec.device_id)]
    if sum(named) != 1:
        raise AlertsError("A rule watches exactly one facility, one load or one device.")
    tenant = {"tenant_id": access.tenant_id}
    facility = load = device = None
    if spec.facility_id is not None:
        facility = Facility.objects.filter(pk=spec.facility_id, archived_at__isnull=True, **tenant).first()
        if facility is None:
            raise AlertsError("The facility does not exist.")
    elif spec.load_id is not None:
        load = Load.objects.filter(pk=spec.load_id, archived_at__isnull=True, **tenant).first()
        if load is None:
            raise AlertsError("The load does not exist.")
        facility = load.facility
    else:
        device = Device.objects.filter(pk=int(spec.device_id or 0), **tenant).first()
        if device is None:
            raise AlertsError("The device does not exist.")
        facility = device.facility
    if not access.manages_facility(facility.pk):
        raise AlertsError("You may not set rules for this facility.")
    if spec.kind == RuleKind.DEMAND_PROJECTION and spec.facility_id is None:
        raise AlertsError("A demand projection rule watches a facility (against its peak target).")
    if spec.kind in DAILY_KINDS and spec.facility_id is None:
        raise AlertsError("A daily energy rule watches a facility (its total consumption).")
    if spec.kind == RuleKind.OUT_OF_HOURS_ENERGY and not facility.opening_hours:
        raise AlertsError("The facility has no opening hours: set them before an out-of-hours rule.")
    if spec.kind == RuleKind.DEVICE_OFFLINE and spec.load_id is not None:
        raise AlertsError("A device-offline rule watches a facility or a device.")
    return (facility if spec.facility_id is not None else None), load, device


def _check_values(spec: RuleSpec) -> tuple[float | None, str]:
    if spec.kind not in RuleKind.values:
        raise AlertsError(f"Unknown rule kind {spec.kind!r}. Known kinds: {', '.join(RuleKind.values)}.")
    if spec.severity not in Severity.values:
        raise AlertsError("The severity must be 0 (info), 1 (warning), 2 (alarm) or 3 (critical).")
    if spec.condition not in Condition.values:
        raise AlertsError(f"Unknown condition {spec.condition!r}.")
    if spec.schedule not in Schedule.values:
        raise AlertsError(f"Unknown schedule {spec.schedule!r}.")
    if not spec.name.strip() or len(spec.name) > 120:
        raise AlertsError("A rule needs a name of at most 120 characters.")
    for value, label in ((spec.duration_s, "duration"), (spec.escalate_after_s, "escalation delay")):
        if not 0 <= value <= MAX_DURATION_S:
            raise AlertsError(f"The {label} must be between 0 and {MAX_DURATION_S} seconds.")
    if not 0 <= spec.deescalate_after_s <= MAX_DURATION_S:
        raise AlertsError(f"The de-escalation delay must be between 0 and {MAX_DURATION_S} seconds.")
    if spec.kind in NEEDS_DURATION and spec.duration_s <= 0:
        raise AlertsError("This kind of rule needs a duration of at least one second.")
    if spec.condition == Condition.DURATION and spec.duration_s <= 0:
        raise AlertsError("The duration condition needs a duration of at least one second.")
    if spec.condition == Condition.REPEAT and not 2 <= spec.repeat_count <= MAX_REPEAT:
        raise AlertsError(f"The repeat condition needs 2 to {MAX_REPEAT} readings in a row.")
    units = THRESHOLD_UNITS.get(spec.kind)
    if units is None:
        if spec.threshold is not None:
            raise AlertsError("This kind of rule takes no threshold.")
        return None, ""
    if spec.threshold is None or spec.threshold != spec.threshold or abs(spec.threshold) > 1e9:
        raise AlertsError("This kind of rule needs a finite threshold.")
    if spec.unit not in units:
        raise AlertsError(f"The threshold of this rule is in {' or '.join(units)}, not {spec.unit!r}.")
    if spec.kind in DAILY_KINDS and not 0 < spec.threshold <= (
        100 if spec.kind == RuleKind.OUT_OF_HOURS_ENERGY else 1000
    ):
        raise AlertsError("The share is a percentage above 0 (at most 100 % of the day, 1000 % off the baseline).")
    # Stored in the kind's own unit, so evaluation never converts per reading.
    canonical = next(iter(units))
    return spec.threshold * units[spec.unit], canonical


def _members(access: Access, user_ids: Iterable[int]) -> list[int]:
    wanted = set(user_ids)
    found = set(
        Membership.objects.filter(tenant_id=access.tenant_id, user_id__in=wanted).values_list("user_id", flat=True)
    )
    if wanted - found:
        raise AlertsError("Every recipient must be a member of your organisation.")
    return sorted(found)


def _webhooks(access: Access, ids: Iterable[int]) -> list[int]:
    wanted = set(ids)
    found = set(Webhook.objects.filter(tenant_id=access.tenant_id, pk__in=wanted).values_list("pk", flat=True))
    if wanted - found:
        raise AlertsError("The webhook does not exist.")
    return sorted(found)


def _require_admin(access: Access) -> None:
    if not (access.is_admin or access.role == Role.FACILITY_MANAGER):
        raise AlertsError("Only tenant admins and facility managers change alert rules.")


@dataclass(frozen=True, slots=True)
class _Checked:
    threshold: float | None
    unit: str
    facility: Facility | None
    load: Load | None
    device: Device | None
    recipients: list[int]
    escalation: list[int]
    webhooks: list[int]


def _check(access: Access, spec: RuleSpec) -> _Checked:
    """Everything a rule may not be, refused before anything is written."""
    _require_admin(access)
    threshold, unit = _check_values(spec)
    facility, load, device = _scope(access, spec)
    return _Checked(
        threshold=threshold,
        unit=unit,
        facility=facility,
        load=load,
        device=device,
        recipients=_members(access, spec.recipient_ids),
        escalation=_members(access, spec.escalation_recipient_ids),
        webhooks=_webhooks(access, spec.webhook_ids),
    )


def _store(rule: AlertRule, spec: RuleSpec, checked: _Checked) -> AlertRule:
    for name in RULE_FIELDS:
        setattr(rule, name, getattr(spec, name))
    rule.threshold, rule.unit = checked.threshold, checked.unit
    rule.facility, rule.load, rule.device = checked.facility, checked.load, checked.device
    rule.save()
    rule.recipients.set(checked.recipients)
    rule.escalation_recipients.set(checked.escalation)
    rule.webhooks.set(checked.webhooks)
    transaction.on_commit(evaluation_cache.invalidate)
    return rule


@transaction.atomic
def alert_rule_create(*, access: Access, spec: RuleSpec) -> AlertRule:
    checked = _check(access, spec)
    return _store(AlertRule(tenant_id=access.tenant_id), spec, checked)


@transaction.atomic
def alert_rule_update(*, access: Access, rule: AlertRule, spec: RuleSpec) -> AlertRule:
    checked = _check(access, spec)
    # The rule's meaning changed: what it remembered about its sources no longer applies.
    rule.states.all().delete()
    return _store(rule, spec, checked)


@transaction.atomic
def alert_rule_delete(*, access: Access, rule: AlertRule) -> None:
    _require_admin(access)
    rule.delete()
    transaction.on_commit(evaluation_cache.invalidate)


def spec_of(rule: AlertRule, **changes: Any) -> RuleSpec:
    """The rule as a spec, with some fields changed (a partial update)."""
    current: dict[str, Any] = {field: getattr(rule, field) for field in RULE_FIELDS}
    current.update(
        facility_id=rule.facility_id,
        load_id=rule.load_id,
        device_id=rule.device_id,
        recipient_ids=list(rule.recipients.values_list("pk", flat=True)),
        escalation_recipient_ids=list(rule.escalation_recipients.values_list("pk", flat=True)),
        webhook_ids=list(rule.webhooks.values_list("pk", flat=True)),
    )
    if {"facility_id", "load_id", "device_id"} & changes.keys():
        current.update(facility_id=None, load_id=None, device_id=None)
    current.update(changes)
    return RuleSpec(**current)


# --- Webhooks -------------------------------------------------------------------------------------


def webhook_create(*, access: Access, name: str, url: str) -> Webhook:
    if not access.is_admin:
        raise AlertsError("Only tenant admins add webhooks.")
    if not name.strip() or len(name) > 120:
        raise AlertsError("A webhook needs a name of at most 120 characters.")
    webhook_url_check(url)
    return Webhook.objects.create(tenant_id=access.tenant_id, name=name, url=url, secret=secrets.token_hex(32))


@transaction.atomic
def webhook_delete(*, access: Access, webhook_id: int) -> None:
    """Remove a webhook: its rules stop posting to it, and its delivery log goes with it."""
    if not access.is_admin:
        raise AlertsError("Only tenant admins remove webhooks.")
    deleted, _ = Webhook.objects.filter(tenant_id=access.tenant_id, pk=webhook_id).delete()
    if not deleted:
        raise Webhook.DoesNotExist


# --- Preferences ----------------------------------------------------------------------------------


@transaction.atomic
def notification_preference_set(
    *,
    access: Access,
    user_id: int | None,
    min_severity: int,
    facility_ids: Sequence[int] = (),
    quiet_start: dt.time | None = None,
    quiet_end: dt.time | None = None,
) -> NotificationPreference:
    if user_id is None or not Membership.objects.filter(tenant_id=access.tenant_id, user_id=user_id).exists():
        raise AlertsError("Preferences belong to a member of your organisation.")
    if min_severity not in Severity.values:
        raise AlertsError("Unknown severity.")
    if (quiet_start is None) != (quiet_end is None):
        raise AlertsError("Quiet hours need both a start and an end.")
    if quiet_start is not None and quiet_start == quiet_end:
        raise AlertsError("Quiet hours need an end other than their start.")
    facilities = list(Facility.objects.filter(tenant_id=access.tenant_id, pk__in=set(facility_ids)))
    if len(facilities) != len(set(facility_ids)):
        raise AlertsError("The facility does not exist.")
    preference, _ = NotificationPreference.objects.update_or_create(
        tenant_id=access.tenant_id,
        user_id=user_id,
        defaults={"min_severity": min_severity, "quiet_start": quiet_start, "quiet_end": quiet_end},
    )
    preference.facilities.set(facilities)
    return preference


# --- The alert lifecycle --------------------------------------------------------------------------


def _notify(alert: Alert, action: str) -> None:
    from alerts.tasks import alert_notify_task

    alert_id = alert.pk
    transaction.on_commit(lambda: alert_notify_task.delay(alert_id, action))


@transaction.atomic
def alert_raise(
    *,
    rule: AlertRule,
    source: str,
    device_id: int | None,
    facility_id: int | None,
    value: float | None,
    at: dt.datetime,
    message: str,
) -> Alert:
    """The rule holds for this source: update its open alert, or raise one (and notify)."""
    open_alert = Alert.objects.select_for_update().filter(rule=rule, source=source).exclude(state=Alert.State.CLEARED)
    alert = open_alert.first()
    if alert is not None:
        alert.value, alert.updated_at = value, at
        alert.save(update_fields=["value", "updated_at"])
        return alert
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                tenant_id=rule.tenant_id,
                rule=rule,
                source=source,
                device_id=device_id,
                facility_id=facility_id,
                severity=rule.severity,
                message=message[:MAX_MESSAGE],
                value=value,
                raised_at=at,
                updated_at=at,
            )
    except IntegrityError:
        # Another worker raised it in the meantime: one alert per source and rule.
        alert = open_alert.get()
        alert.value, alert.updated_at = value, at
        alert.save(update_fields=["value", "updated_at"])
        return alert
    AlertHistory.objects.create(alert=alert, at=at, action=AlertHistory.Action.RAISED, value=value)
    _notify(alert, AlertHistory.Action.RAISED)
    return alert


@transaction.atomic
def alert_clear(*, rule: AlertRule, source: str, at: dt.datetime, comment: str = "") -> Alert | None:
    alert = (
        Alert.objects.select_for_update().filter(rule=rule, source=source).exclude(state=Alert.State.CLEARED).first()
    )
    if alert is None:
        return None
    alert.state, alert.cleared_at = Alert.State.CLEARED, at
    alert.save(update_fields=["state", "cleared_at"])
    AlertHistory.objects.create(alert=alert, at=at, action=AlertHistory.Action.CLEARED, comment=comment)
    _notify(alert, AlertHistory.Action.CLEARED)
    return alert


@transaction.atomic
def alert_acknowledge(*, access: Access, alert_id: int, comment: str) -> Alert:
    """Someone takes care of it: who and why are kept, and its reminders stop."""
    if len(comment) > 2000:
        raise AlertsError("The comment is longer than 2,000 characters.")
    from alerts.selectors import alert_list

    alert = alert_list(access=access).select_for_update(of=("self",)).get(pk=alert_id)
    if alert.state != Alert.State.ACTIVE:
        raise AlertsError(f"The alert is already {alert.get_state_display().lower()}.")
    now = timezone.now()
    alert.state, alert.acknowledged_at = Alert.State.ACKNOWLEDGED, now
    alert.acknowledged_by_id, alert.comment = access.user_id, comment
    alert.save(update_fields=["state", "acknowledged_at", "acknowledged_by", "comment"])
    AlertHistory.objects.create(
        alert=alert, at=now, action=AlertHistory.Action.ACKNOWLEDGED, actor_id=access.user_id, comment=comment
    )
    _notify(alert, AlertHistory.Action.ACKNOWLEDGED)
    return alert


@transaction.atomic
def alert_remind(*, alert_id: int, now: dt.datetime) -> bool:
    """An alert still unacknowledged after the rule's delay: remind the second list (again after each delay)."""
    alert = Alert.objects.select_for_update().filter(pk=alert_id, state=Alert.State.ACTIVE).first()
    if alert is None:
        return False
    alert.reminded_at = now
    alert.save(update_fields=["reminded_at"])
    AlertHistory.objects.create(alert=alert, at=now, action=AlertHistory.Action.REMINDED)
    _notify(alert, AlertHistory.Action.REMINDED)
    return True


# --- Refrigeration (HACCP) ------------------------------------------------------------------------

PRESET_LIMITS: dict[str, float] = {ColdUnit.Preset.CHILLED: 5.0, ColdUnit.Preset.FROZEN: -18.0}


def _cold_limit(preset: str, limit_c: float | None, alarm_delay_s: int) -> float:
    if preset not in ColdUnit.Preset.values:
        raise AlertsError(f"Unknown preset {preset!r}: chilled, frozen or custom.")
    if preset == ColdUnit.Preset.CUSTOM and (limit_c is None or not -60 <= limit_c <= 30):
        raise AlertsError("A custom limit is a temperature between −60 and +30 °C.")
    if not 0 <= alarm_delay_s <= MAX_DURATION_S:
        raise AlertsError(f"The alarm delay must be between 0 and {MAX_DURATION_S} seconds.")
    limit = PRESET_LIMITS.get(preset, limit_c)
    assert limit is not None
    return limit


@transaction.atomic
def cold_unit_update(
    *, access: Access, unit: ColdUnit, name: str, preset: str, limit_c: float | None = None, alarm_delay_s: int
) -> ColdUnit:
    """Change a unit's name, limit or alarm delay; its temperature rule changes with it."""
    limit = _cold_limit(preset, limit_c, alarm_delay_s)
    condition = Condition.DURATION if alarm_delay_s else Condition.SIMPLE
    spec = spec_of(unit.rule, name=name, threshold=limit, unit="°C", condition=condition, duration_s=alarm_delay_s)
    alert_rule_update(access=access, rule=unit.rule, spec=spec)
    unit.name, unit.preset, unit.limit_c, unit.alarm_delay_s = name, preset, limit, alarm_delay_s
    unit.save(update_fields=["name", "preset", "limit_c", "alarm_delay_s"])
    return unit


@transaction.atomic
def cold_unit_create(
    *,
    access: Access,
    device_id: int,
    name: str,
    preset: str,
    limit_c: float | None = None,
    alarm_delay_s: int = 900,
    severity: int = Severity.ALARM,
    recipient_ids: Sequence[int] = (),
) -> ColdUnit:
    """A cold room or cabinet, watched by a temperature rule with its limit, its alarm delay and defrost suppression."""
    limit = _cold_limit(preset, limit_c, alarm_delay_s)
    rule = alert_rule_create(
        access=access,
        spec=RuleSpec(
            name=name,
            kind=RuleKind.TEMPERATURE,
            severity=severity,
            device_id=device_id,
            threshold=limit,
            unit="°C",
            condition=Condition.DURATION if alarm_delay_s else Condition.SIMPLE,
            duration_s=alarm_delay_s,
            recipient_ids=recipient_ids,
        ),
    )
    assert rule.device is not None
    return ColdUnit.objects.create(
        tenant_id=access.tenant_id,
        name=name,
        facility=rule.device.facility,
        device=rule.device,
        preset=preset,
        limit_c=limit,
        alarm_delay_s=alarm_delay_s,
        rule=rule,
    )


def excursion_track(
    *, rule_id: int, alert: Alert | None, started_at: dt.datetime | None, worst: float, ended_at: dt.datetime | None
) -> None:
    """Keep the cold unit's excursion beside its alert: opened with the alert, its worst value, closed with it."""
    unit = ColdUnit.objects.filter(rule_id=rule_id).first()
    if unit is None or alert is None:
        return
    excursion = Excursion.objects.filter(alert=alert).first()
    if excursion is None:
        if ended_at is not None:
            return
        Excursion.objects.create(unit=unit, alert=alert, started_at=started_at or alert.raised_at, worst_c=worst)
        return
    excursion.worst_c = max(excursion.worst_c, worst)
    excursion.ended_at = ended_at
    excursion.save(update_fields=["worst_c", "ended_at"])


def corrective_action_record(*, access: Access, excursion_id: int, text: str) -> CorrectiveAction:
    if not text.strip() or len(text) > 2000:
        raise AlertsError("Describe the corrective action in at most 2,000 characters.")
    excursion = (
        Excursion.objects.filter(pk=excursion_id, unit__tenant_id=access.tenant_id).select_related("unit").first()
    )
    if excursion is None or not access.sees_facility(excursion.unit.facility_id):
        raise Excursion.DoesNotExist
    return CorrectiveAction.objects.create(excursion=excursion, by_id=access.user_id, at=timezone.now(), text=text)
