"""How far behind the store is, and whether beat and a worker are alive: read by /healthz and /metrics.

- ingest lag: the age of the newest stored reading (a stalled queue or worker shows here first);
- rollup lag: how far the newest 15-minute rollup trails the newest stored reading;
- the heartbeat: beat schedules `readings.heartbeat` every few seconds and a worker runs it, so
  its age is the age of the proof that both are alive (in the embedded mode too, where
  `manage.py runtaskworker` runs them).
"""

from __future__ import annotations

import socket
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from readings.models import Bucket, Resolution, Rollup, WorkerHeartbeat
from readings.store.base import DAY_MS

HEARTBEAT = "beat+worker"
# Only recent windows are looked at: a bounded scan (one or two partitions on PostgreSQL).
RECENT_MS = 2 * DAY_MS


def _now_ms(now: datetime | None) -> int:
    return int((now or timezone.now()).timestamp() * 1000)


def newest_reading_ms(*, now: datetime | None = None) -> int | None:
    since = _now_ms(now) - RECENT_MS
    return Bucket.objects.filter(window_ms__gte=since - since % DAY_MS).aggregate(m=Max("last_ms"))["m"]


def newest_rollup_ms(*, now: datetime | None = None) -> int | None:
    since = _now_ms(now) - RECENT_MS
    rows = Rollup.objects.filter(resolution=Resolution.M15, start_ms__gte=since)
    return rows.aggregate(m=Max("last_ms"))["m"]


def ingest_lag_s(*, now: datetime | None = None) -> float | None:
    """Seconds since the newest stored reading; None when nothing arrived in the last two days."""
    newest = newest_reading_ms(now=now)
    return None if newest is None else max(0.0, (_now_ms(now) - newest) / 1000)


def rollup_lag_s(*, now: datetime | None = None) -> float | None:
    """Seconds of stored readings not yet in a 15-minute rollup; None when nothing is recent."""
    newest = newest_reading_ms(now=now)
    if newest is None:
        return None
    rolled = newest_rollup_ms(now=now)
    if rolled is None:
        return (newest - (_now_ms(now) - RECENT_MS)) / 1000
    return max(0.0, (newest - rolled) / 1000)


def heartbeat_record(*, name: str = HEARTBEAT, now: datetime | None = None) -> None:
    WorkerHeartbeat.objects.update_or_create(
        name=name, defaults={"at": now or timezone.now(), "hostname": socket.gethostname()}
    )


def heartbeat_age_s(*, name: str = HEARTBEAT, now: datetime | None = None) -> float | None:
    beat = WorkerHeartbeat.objects.filter(name=name).values_list("at", flat=True).first()
    return None if beat is None else max(0.0, ((now or timezone.now()) - beat).total_seconds())
