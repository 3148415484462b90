"""Rule evaluation on ingest: the added cost per reading, and reading → webhook latency.

Data: DEVICES cold-room devices (temperature, door, defrost, power) in one facility, watched by a
facility-wide freezer rule (−18 °C, 10-minute delay) and a door rule (5 minutes). Each round sends
every device one 30-second batch (4 channels × 15 readings) through `readings_ingest` in groups
of 512 batches, as the gateway's batcher hands them over; rounds alternate between the store
write alone (the baseline, in the same run) and the store write followed by `readings_evaluate`,
which is what the ingest worker runs.

Latency: LATENCY_SAMPLES devices each get one reading that breaks a simple rule with a webhook to
a local receiver (allow-listed); tasks run in-process (eager), so the figure is the platform's own
work from ingest to the receiver's socket, without broker hops.

Besides the round-to-round difference (which a loaded machine makes noisy), the time spent inside
`readings_evaluate` is measured on its own in the same rounds: `evaluate_us_per_reading` and its share
of the store write (`evaluate_share_pct`).

The fleet is one facility; devices missing from an earlier run are added in bulk (rows only: the
evaluation reads channels, not keys), so a first run at 10,000 devices stays within minutes.

Environment: BENCH_DEVICES (default 10000), BENCH_ROUNDS (default 6). Progress goes to stderr; the
last line: one JSON object.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _common import percentile, report, setup, truncate_readings

DEVICES = int(os.environ.get("BENCH_DEVICES", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
GROUP = 512
SAMPLES = 15
LATENCY_SAMPLES = 40
CHANNELS = [
    {"name": "Air", "quantity": "temperature", "unit": "°C"},
    {"name": "Door", "quantity": "door", "unit": "state"},
    {"name": "Defrost", "quantity": "defrost", "unit": "state"},
    {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total"},
]


def progress(message: str) -> None:
    print(f"alerts: {message}", file=sys.stderr, flush=True)


def bulk_fleet(*, slug: str, devices: int):
    """A tenant with `devices` devices of the cold-room type in ONE facility, added in bulk when missing."""
    from accounts.models import Tenant
    from devices import services
    from devices.models import Channel, Device, DeviceType, Facility

    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug, "kind": Tenant.Kind.ENTERPRISE})
    model_name = f"{slug}-meter-{len(CHANNELS)}"
    device_type = DeviceType.objects.filter(model_name=model_name).first() or services.device_type_create(
        model_name=model_name, channels=CHANNELS, firmware_line="bench"
    )
    facility = Facility.objects.filter(tenant=tenant).order_by("pk").first() or services.facility_create(
        tenant=tenant, name=f"{slug} site", timezone="Europe/Berlin"
    )
    # Devices left in other facilities by earlier versions of this benchmark would escape the facility's rules.
    Device.objects.filter(tenant=tenant).exclude(facility=facility).update(facility=facility)
    have = Device.objects.filter(tenant=tenant).count()
    for first in range(have, devices, 1000):
        made = Device.objects.bulk_create(
            Device(tenant=tenant, facility=facility, device_type=device_type, serial=f"{slug.upper()}-{i:06d}")
            for i in range(first, min(devices, first + 1000))
        )
        Channel.objects.bulk_create(
            c for d in made for c in services.channels_from_template(device=d, specs=device_type.channels)
        )
        progress(f"fleet {min(devices, first + 1000)}/{devices} devices")
    if have < devices:
        from django.db import connection

        # Fresh bulk rows have no planner statistics until autovacuum gets to them: the rule lookup's
        # channel query then runs as a nested loop for tens of seconds (30 s at 10,000 devices).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE devices_device, devices_channel")
    return list(Device.objects.filter(tenant=tenant).order_by("pk").select_related("tenant")[:devices])


def batches_for(devices, channel_ids, start_ms: int, *, air: float = -20.0):
    import numpy as np

    from readings.batch import ReadingsBatch

    ts = start_ms + 2000 * np.arange(SAMPLES, dtype=np.int64)
    rng = np.random.default_rng(start_ms % 2**32)
    out = []
    for device in devices:
        values = np.empty((4, SAMPLES))
        values[0] = air + 0.3 * rng.standard_normal(SAMPLES)
        values[1] = 0.0
        values[2] = 0.0
        values[3] = 3000 + 200 * rng.standard_normal(SAMPLES)
        out.append(
            ReadingsBatch(
                tenant_id=device.tenant_id,
                device_id=device.pk,
                seq=start_ms // 30_000,
                channel_ids=channel_ids[device.pk],
                timestamps_ms=ts,
                values=values,
            )
        )
    return out


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        arrivals = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                import json

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                arrivals[body["alert"]["device_id"]] = time.perf_counter()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> None:
    setup()
    import numpy as np
    from django.conf import settings

    from accounts.selectors import access_for_tenant
    from alerts import evaluation_cache, services
    from alerts.evaluation import readings_evaluate
    from alerts.models import Alert, AlertRule, RuleState, Webhook
    from devices.models import Channel
    from energybox.celery import app
    from readings.services import readings_ingest

    devices = bulk_fleet(slug="bench-alerts", devices=DEVICES)
    truncate_readings()
    Alert.objects.all().delete()
    RuleState.objects.all().delete()
    AlertRule.objects.all().delete()
    Webhook.objects.all().delete()
    rows = Channel.objects.filter(device__in=devices).order_by("device_id", "index").values_list("device_id", "id")
    by_device: dict[int, list[int]] = {}
    for device_id, channel_id in rows:
        by_device.setdefault(device_id, []).append(channel_id)
    channel_ids = {d: np.array(ids, dtype=np.int64) for d, ids in by_device.items()}
    facility_id = devices[0].facility_id
    access = access_for_tenant(tenant=devices[0].tenant)
    freezer = services.RuleSpec(
        name="Freezer",
        kind="temperature",
        facility_id=facility_id,
        threshold=-18,
        unit="°C",
        condition="duration",
        duration_s=600,
    )
    services.alert_rule_create(access=access, spec=freezer)
    door = services.RuleSpec(name="Door", kind="door_open", facility_id=facility_id, duration_s=300)
    services.alert_rule_create(access=access, spec=door)
    evaluation_cache.invalidate()
    build_started = time.perf_counter()
    readings_evaluate(batches=batches_for(devices[:1], channel_ids, 1_700_000_000_000))
    index_build_s = time.perf_counter() - build_started

    start_ms = ((int(time.time() * 1000) - 6 * 3_600_000) // 30_000) * 30_000
    baseline_s = rules_s = evaluate_s = store_in_rules_s = 0.0
    readings = 0
    for round_no in range(ROUNDS * 2):
        batches = batches_for(devices, channel_ids, start_ms + round_no * 30_000)
        with_rules = round_no % 2 == 1
        started = time.perf_counter()
        for first in range(0, len(batches), GROUP):
            group = batches[first : first + GROUP]
            stored_at = time.perf_counter()
            readings_ingest(batches=group)
            if with_rules:
                evaluated_at = time.perf_counter()
                readings_evaluate(batches=group)
                evaluate_s += time.perf_counter() - evaluated_at
                store_in_rules_s += evaluated_at - stored_at
        elapsed = time.perf_counter() - started
        if with_rules:
            rules_s += elapsed
            readings += sum(b.reading_count for b in batches)
        else:
            baseline_s += elapsed
        kind = "with rules" if with_rules else "baseline"
        progress(f"round {round_no + 1}/{ROUNDS * 2} ({kind}): {elapsed:.2f} s for {len(batches)} batches")
    added_pct = 100.0 * (rules_s - baseline_s) / baseline_s

    progress(f"latency: one breaking reading each for {LATENCY_SAMPLES} devices, webhook to a local receiver")
    receiver = Receiver()
    settings.ALERTS_WEBHOOK_ALLOWED_HOSTS = [f"127.0.0.1:{receiver.port}"]
    hook = services.webhook_create(access=access, name="bench", url=f"http://127.0.0.1:{receiver.port}/hook")
    hot = services.RuleSpec(
        name="Too warm", kind="temperature", facility_id=facility_id, threshold=5, unit="°C", webhook_ids=[hook.pk]
    )
    services.alert_rule_create(access=access, spec=hot)
    evaluation_cache.invalidate()
    app.conf.task_always_eager = True
    sent: dict[int, float] = {}
    late_ms = start_ms + ROUNDS * 2 * 30_000
    for device in devices[:LATENCY_SAMPLES]:
        batch = batches_for([device], channel_ids, late_ms, air=8.0)
        sent[device.pk] = time.perf_counter()
        readings_ingest(batches=batch)
        readings_evaluate(batches=batch)
    deadline = time.monotonic() + 30
    while len(receiver.arrivals) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    latencies = [receiver.arrivals[d] - sent[d] for d in sent if d in receiver.arrivals]
    receiver.server.shutdown()
    report(
        {
            "bench": "alerts",
            "devices": DEVICES,
            "readings_with_rules": readings,
            "baseline_ingest_us_per_reading": round(baseline_s / readings * 1e6, 3),
            "with_rules_ingest_us_per_reading": round(rules_s / readings * 1e6, 3),
            "added_ingest_cost_pct": round(added_pct, 2),
            "added_cost_bar_pct": 10,
            "evaluate_us_per_reading": round(evaluate_s / readings * 1e6, 3),
            "evaluate_share_pct": round(100.0 * evaluate_s / store_in_rules_s, 2),
            "rule_index_build_s": round(index_build_s, 3),
            "webhooks_delivered": f"{len(latencies)}/{len(sent)}",
            "reading_to_webhook_p50_s": percentile(latencies, 50) if latencies else None,
            "reading_to_webhook_p95_s": percentile(latencies, 95) if latencies else None,
            "reading_to_webhook_bar_s": 5,
        }
    )


if __name__ == "__main__":
    main()
