"""Notifications over real sockets: mail to a local SMTP server, signed webhooks to a local receiver, the SSRF guard."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.selectors import access_for_tenant
from accounts.tests.factories import MembershipFactory
from alerts import evaluation_cache, services
from alerts.errors import AlertsError
from alerts.evaluation import alerts_sweep, readings_evaluate
from alerts.models import Alert, AlertHistory, Webhook, WebhookDelivery
from alerts.tests.factories import cold_room, rule
from alerts.tests.test_evaluation import T0, batch
from alerts.webhooks import SIGNATURE_HEADER
from readings.tests.processes import purge_queues, wait_for_workers, wait_until, worker

pytestmark = pytest.mark.django_db


class Receiver:
    """A local webhook receiver that answers 500 to the first `failures` posts, then 200."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.posts: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.posts) <= receiver.failures else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    with Receiver(failures=2) as running:
        settings.ALERTS_WEBHOOK_ALLOWED_HOSTS = [f"127.0.0.1:{running.port}"]
        settings.ALERTS_WEBHOOK_BACKOFF_S = 0.01
        yield running


@pytest.mark.e2e
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_webhook_arrives_signed_and_is_retried_by_a_celery_worker_while_the_receiver_answers_500(rabbitmq_url):
    with Receiver(failures=2) as receiver:
        env = {"ALERTS_WEBHOOK_ALLOWED_HOSTS": f"127.0.0.1:{receiver.port}", "ALERTS_WEBHOOK_BACKOFF_S": "1"}
        purge_queues("celery")
        with worker(queues="celery", env=env):
            wait_for_workers()
            with override_settings(ALERTS_WEBHOOK_ALLOWED_HOSTS=env["ALERTS_WEBHOOK_ALLOWED_HOSTS"].split(",")):
                room = cold_room()
                hook = services.webhook_create(
                    access=access_for_tenant(tenant=room.tenant), name="Ops", url=receiver.url
                )
                rule(room, webhook_ids=[hook.pk])
                evaluation_cache.invalidate()
                readings_evaluate(batches=[batch(room, T0, air=[9.0])])
            wait_until(
                lambda: WebhookDelivery.objects.filter(delivered_at__isnull=False).exists(),
                timeout=60,
                what="the webhook's delivery after two refusals",
            )
    assert len(receiver.posts) == 3  # 500, 500, 200
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    payload = json.loads(receiver.posts[-1][1])
    assert payload["event"] == "alert.raised" and payload["alert"]["value"] == 9.0
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 3 and delivery.status_code == 200 and delivery.delivered_at is not None


def test_the_alert_mail_arrives_at_the_local_smtp_server_and_respects_preferences(
    smtp, embedded, django_capture_on_commit_callbacks
):
    room = cold_room()
    anna = MembershipFactory(tenant=room.tenant).user
    ben = MembershipFactory(tenant=room.tenant).user
    access = access_for_tenant(tenant=room.tenant)
    services.notification_preference_set(access=access, user_id=ben.pk, min_severity=3)  # critical only
    rule(room, recipient_ids=[anna.pk, ben.pk], severity=2)
    with django_capture_on_commit_callbacks(execute=True):
        readings_evaluate(batches=[batch(room, T0, air=[8.0])])
    recipients = [rcpts for rcpts, _ in smtp.messages]
    assert recipients == [[anna.email]]
    message = smtp.messages[0][1]
    assert "Cold room" in message["Subject"] and "8.0" in message.get_payload(decode=True).decode()


def test_an_acknowledged_alert_stops_its_reminders(smtp, embedded, django_capture_on_commit_callbacks):
    room = cold_room()
    boss = MembershipFactory(tenant=room.tenant).user
    rule(room, escalation_recipient_ids=[boss.pk], escalate_after_s=600)
    readings_evaluate(batches=[batch(room, T0, air=[8.0])])
    alert = Alert.objects.get()
    raised = alert.raised_at

    def sweep(minutes: int) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            alerts_sweep(now=raised + dt.timedelta(minutes=minutes))
        return len(smtp.messages)

    assert sweep(5) == 0
    assert sweep(10) == 1 and smtp.messages[0][0] == [boss.email]
    assert sweep(15) == 1  # the next reminder is due 10 minutes after the first
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_acknowledge(access=access_for_tenant(tenant=room.tenant), alert_id=alert.pk, comment="on it")
    assert sweep(40) == 1
    actions = list(alert.history.values_list("action", flat=True))
    assert actions == ["raised", "reminded", "acknowledged"]


def test_an_alert_no_reading_confirms_any_more_is_de_escalated_on_time():
    room = cold_room()
    rule(room, deescalate_after_s=900)
    readings_evaluate(batches=[batch(room, T0, air=[8.0])])
    alert = Alert.objects.get()
    alerts_sweep(now=alert.updated_at + dt.timedelta(minutes=14))
    assert Alert.objects.get().state == Alert.State.ACTIVE
    alerts_sweep(now=alert.updated_at + dt.timedelta(minutes=15))
    cleared = Alert.objects.get()
    assert cleared.state == Alert.State.CLEARED
    assert cleared.history.last().action == AlertHistory.Action.CLEARED


def test_a_device_silent_for_n_minutes_is_reported_offline_whatever_its_online_flag():
    room = cold_room()
    room.status, room.last_seen = "online", timezone.now() - dt.timedelta(minutes=6)
    room.save()
    rule(room, kind="device_offline", name="Offline", duration_s=300)
    alerts_sweep()
    alert = Alert.objects.get()
    assert alert.source == f"d:{room.pk}" and alert.state == Alert.State.ACTIVE
    room.last_seen = timezone.now()
    room.save()
    alerts_sweep()
    assert Alert.objects.get().state == Alert.State.CLEARED


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",  # loopback
        "https://10.1.2.3/hook",  # private
        "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
        "https://[::1]/hook",
        "https://user:pw@example.com/hook",
        "ftp://example.com/x",
        "https://localhost:8443/hook",
    ],
)
def test_ssrf_webhook_targets_are_refused_and_nothing_is_stored(url):
    room = cold_room()
    with pytest.raises(AlertsError):
        services.webhook_create(access=access_for_tenant(tenant=room.tenant), name="x", url=url)
    assert not Webhook.objects.exists()


def test_a_target_that_turns_private_after_it_was_accepted_is_refused_at_delivery(settings, receiver):
    room = cold_room()
    access = access_for_tenant(tenant=room.tenant)
    hook = services.webhook_create(access=access, name="Ops", url=receiver.url)
    rule(room, webhook_ids=[hook.pk])
    readings_evaluate(batches=[batch(room, T0, air=[9.0])])
    from alerts.notifications import Delivery, alert_notify, webhook_deliver

    alert_notify(alert_id=Alert.objects.get().pk, action="raised")
    settings.ALERTS_WEBHOOK_ALLOWED_HOSTS = []
    assert webhook_deliver(delivery_id=WebhookDelivery.objects.get().pk) == Delivery.REFUSED
    assert receiver.posts == [] and "https" in WebhookDelivery.objects.get().error
