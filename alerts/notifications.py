"""Telling people and systems: e-mail through Django's backend, signed webhooks with a delivery log, live pushes."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import requests
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import User
from alerts.errors import AlertsError
from alerts.models import Alert, AlertHistory, NotificationPreference, WebhookDelivery
from alerts.webhooks import SIGNATURE_HEADER, sign, webhook_url_check

logger = logging.getLogger(__name__)


def alerts_group(tenant_id: int) -> str:
    return f"alerts.tenant.{tenant_id}"


def in_quiet_hours(preference: NotificationPreference, at: dt.datetime, tz: ZoneInfo) -> bool:
    start, end = preference.quiet_start, preference.quiet_end
    if start is None or end is None or start == end:
        return False
    clock = at.astimezone(tz).time()
    return start <= clock < end if start < end else (clock >= start or clock < end)


def _wants(preference: NotificationPreference | None, alert: Alert, now: dt.datetime, tz: ZoneInfo) -> bool:
    if preference is None:
        return True
    if alert.severity < preference.min_severity:
        return False
    facility_ids = {f.pk for f in preference.facilities.all()}
    if facility_ids and alert.facility_id not in facility_ids:
        return False
    return not in_quiet_hours(preference, now, tz)


def _subject(alert: Alert, action: str) -> str:
    labels: dict[str, str] = {
        AlertHistory.Action.RAISED: _("Alert"),
        AlertHistory.Action.REMINDED: _("Reminder: unacknowledged alert"),
        AlertHistory.Action.CLEARED: _("Cleared"),
        AlertHistory.Action.ACKNOWLEDGED: _("Acknowledged"),
    }
    label = labels.get(action, _("Alert"))
    return f"[{alert.get_severity_display()}] {label}: {alert.rule.name}"


def _mail(alert: Alert, action: str, users: list[User]) -> int:
    tz = ZoneInfo(alert.facility.timezone) if alert.facility else ZoneInfo("UTC")
    now = timezone.now()
    preferences = {
        p.user_id: p
        for p in NotificationPreference.objects.filter(tenant_id=alert.tenant_id, user__in=users).prefetch_related(
            "facilities"
        )
    }
    messages = []
    for user in users:
        if not user.email or not _wants(preferences.get(user.pk), alert, now, tz):
            continue
        with translation.override(user.language or settings.LANGUAGE_CODE):
            body = "\n".join(
                [
                    alert.message,
                    _("Facility: %(facility)s") % {"facility": alert.facility.name if alert.facility else "—"},
                    _("Since: %(time)s") % {"time": alert.raised_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")},
                ]
            )
            messages.append(EmailMessage(_subject(alert, action), body, to=[user.email]))
    if messages:
        get_connection().send_messages(messages)
    return len(messages)


def payload_of(alert: Alert, action: str) -> dict[str, object]:
    return {
        "event": f"alert.{action}",
        "alert": {
            "id": alert.pk,
            "rule": {"id": alert.rule_id, "name": alert.rule.name, "kind": alert.rule.kind},
            "state": alert.state,
            "severity": alert.get_severity_display().lower(),
            "source": alert.source,
            "facility_id": alert.facility_id,
            "device_id": alert.device_id,
            "message": alert.message,
            "value": alert.value,
            "raised_at": alert.raised_at.isoformat(),
            "updated_at": alert.updated_at.isoformat(),
        },
        "sent_at": timezone.now().isoformat(),
    }


@dataclass(frozen=True, slots=True)
class Notified:
    mails: int
    webhooks: int


@transaction.atomic
def alert_notify(*, alert_id: int, action: str) -> Notified:
    """Mail the rule's recipients (the second list for reminders), queue its webhooks, push to the portal."""
    alert = Alert.objects.select_related("rule", "facility").get(pk=alert_id)
    rule = alert.rule
    mails = 0
    if action in (AlertHistory.Action.RAISED, AlertHistory.Action.CLEARED, AlertHistory.Action.REMINDED):
        people = rule.escalation_recipients if action == AlertHistory.Action.REMINDED else rule.recipients
        mails = _mail(alert, action, list(people.all()))
    deliveries = [
        WebhookDelivery.objects.create(
            webhook=webhook, alert=alert, action=action, body=json.dumps(payload_of(alert, action))
        )
        for webhook in rule.webhooks.all()
    ]
    from alerts.tasks import webhook_deliver_task

    for delivery in deliveries:
        delivery_id = delivery.pk
        transaction.on_commit(lambda delivery_id=delivery_id: webhook_deliver_task.delay(delivery_id))  # type: ignore[misc]
    tenant_id, state = alert.tenant_id, alert.state
    transaction.on_commit(lambda: _push(tenant_id, alert_id, state))
    return Notified(mails=mails, webhooks=len(deliveries))


def _push(tenant_id: int, alert_id: int, state: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    open_count = Alert.objects.filter(tenant_id=tenant_id).exclude(state=Alert.State.CLEARED).count()
    try:
        async_to_sync(layer.group_send)(
            alerts_group(tenant_id), {"type": "alert.changed", "alert_id": alert_id, "state": state, "open": open_count}
        )
    except Exception:  # noqa: BLE001 - a live badge is a convenience; the alert is stored either way
        logger.warning("alerts: could not push alert %s to the portal", alert_id, exc_info=True)


class Delivery:
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


def webhook_deliver(*, delivery_id: int) -> str:
    """One attempt: POST the signed JSON; logs the outcome on the delivery."""
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    if delivery.delivered_at is not None:
        return Delivery.DELIVERED
    webhook = delivery.webhook
    body = delivery.body.encode()
    delivery.attempts += 1
    outcome = Delivery.RETRY
    try:
        webhook_url_check(webhook.url)
        response = requests.post(
            webhook.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret=webhook.secret, body=body),
                "X-Energybox-Delivery": str(delivery.pk),
            },
            timeout=settings.ALERTS_WEBHOOK_TIMEOUT_S,
            allow_redirects=False,
        )
    except AlertsError as exc:
        delivery.status_code, delivery.error, outcome = None, str(exc)[:255], Delivery.REFUSED
    except requests.RequestException as exc:
        delivery.status_code, delivery.error = None, f"{type(exc).__name__}: {exc}"[:255]
    else:
        delivery.status_code = response.status_code
        if 200 <= response.status_code < 300:
            delivery.error, delivery.delivered_at, outcome = "", timezone.now(), Delivery.DELIVERED
        else:
            delivery.error = f"HTTP {response.status_code}"
    delivery.save(update_fields=["attempts", "status_code", "error", "delivered_at"])
    return outcome
