"""Faults under load, with real processes and services: nothing the broker confirmed is lost or doubled.

A sender process (readings/tests/loadgen.py) enqueues batches through `readings_enqueue` and keeps a
ledger of what was acknowledged; real Celery worker processes store them in PostgreSQL. During the
load a worker is SIGKILLed, RabbitMQ is restarted, or the test database refuses connections. Then
every acknowledged reading must be stored exactly once: count and checksum match the ledger.

Every fault lands mid-load by construction: the sender keeps sending until the test has seen the
fault take effect (a refused enqueue, a refused database connection in the worker's log) and has
seen more batches acknowledged after it. The broker is this module's own RabbitMQ node (own name,
ports and data folder), never the machine's. Each test stops by itself (timeouts on every wait).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from django.db import connection

from readings import metadata
from readings.models import Bucket
from readings.services import readings_compact
from readings.store import get_store
from readings.tests.brokers import RabbitNode, rabbitmq_cluster, require_rabbitmq_server
from readings.tests.factories import device_with_channels
from readings.tests.loadgen import batch_arrays
from readings.tests.processes import (
    ROOT,
    child_database_url,
    start_worker,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True), pytest.mark.timeout(280)]
# Enough devices that each message keeps the worker busy for a while: the SIGKILL test waits until
# the worker holds unacknowledged messages, which a worker idling between tiny messages rarely does.
DEVICES = 20


@dataclass
class Load:
    tenant_id: int
    devices: list[tuple[int, list[int]]]
    base_ms: int
    ledger: Path

    @property
    def stop_file(self) -> Path:
        return self.ledger.with_suffix(".stop")

    def channel_ids(self) -> list[int]:
        return [c for _, channels in self.devices for c in channels]


def _load(tmp_path: Path) -> Load:
    first, p, e = device_with_channels()
    devices = [(first.pk, [p.pk, e.pk])]
    for _ in range(DEVICES - 1):
        device, p, e = device_with_channels(facility=first.facility)
        devices.append((device.pk, [p.pk, e.pk]))
    now = int(time.time() * 1000)
    return Load(first.tenant_id, devices, now - 3 * 86_400_000, tmp_path / "ledger.txt")


def _sender(load: Load, seconds: float | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The load; with no `seconds` it sends until `_keep_sending_past_the_fault` lets it stop."""
    argv = [
        sys.executable,
        "-m",
        "readings.tests.loadgen",
        "--ledger",
        str(load.ledger),
        "--tenant",
        str(load.tenant_id),
    ]
    argv += ["--base-ms", str(load.base_ms)]
    argv += ["--seconds", str(seconds)] if seconds is not None else ["--until", str(load.stop_file)]
    for device_id, channels in load.devices:
        argv += ["--device", f"{device_id}:{','.join(map(str, channels))}"]
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "energybox.settings.test",
        "DATABASE_URL": child_database_url(),
        **(env or {}),
    }
    return subprocess.Popen(argv, cwd=ROOT, env=child_env)  # noqa: S603


def _digest(channels: np.ndarray, ts: np.ndarray, values: np.ndarray) -> tuple[int, str]:
    order = np.lexsort((ts, channels))
    h = hashlib.sha256()
    for array in (channels[order], ts[order], values[order]):
        h.update(np.ascontiguousarray(array).tobytes())
    return len(ts), h.hexdigest()


def _ledger_digest(load: Load) -> tuple[int, str]:
    seqs = sorted({int(line) for line in load.ledger.read_text().split()})
    channels, stamps, values = [], [], []
    for seq in seqs:
        for index, (_, channel_ids) in enumerate(load.devices):
            ts, v = batch_arrays(device_index=index, channel_count=len(channel_ids), seq=seq, base_ms=load.base_ms)
            for row, channel_id in enumerate(channel_ids):
                present = ~np.isnan(v[row])
                channels.append(np.full(int(present.sum()), channel_id, dtype=np.int64))
                stamps.append(ts[present])
                values.append(v[row][present])
    return _digest(np.concatenate(channels), np.concatenate(stamps), np.concatenate(values))


def _stored_digest(load: Load) -> tuple[int, str]:
    connection.close()
    stored = get_store().read(
        tenant_id=load.tenant_id,
        channel_ids=load.channel_ids(),
        start_ms=load.base_ms - 86_400_000,
        end_ms=load.base_ms + 30 * 86_400_000,
    )
    if not stored:
        return 0, ""
    channels = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in stored.items()])
    return _digest(
        channels,
        np.concatenate([p.timestamps_ms for p in stored.values()]),
        np.concatenate([p.values for p in stored.values()]),
    )


def _acked(load: Load) -> int:
    return len(load.ledger.read_text().split()) if load.ledger.exists() else 0


def _refused(load: Load) -> int:
    stats = Path(f"{load.ledger}.refused")
    return int(stats.read_text() or 0) if stats.exists() else 0


def _keep_sending_past_the_fault(load: Load, *, more: int = 20) -> None:
    """The load goes on after the fault (the recovery is loaded too), then the sender stops."""
    acked = _acked(load)
    wait_until(lambda: _acked(load) >= acked + more, timeout=90, what="acknowledged batches after the fault")
    load.stop_file.touch()


def _settle_and_check(load: Load, sender: subprocess.Popen, worker_process: subprocess.Popen) -> None:
    load.stop_file.touch()
    assert sender.wait(timeout=150) == 0, "the sender could not get its batches acknowledged"
    expected = _ledger_digest(load)
    assert expected[0] > 500, "the load was too small to mean anything"
    try:
        wait_until(lambda: _stored_digest(load)[0] >= expected[0], timeout=120, what="the workers to catch up")
        time.sleep(1.0)  # anything still in flight would show up as an extra reading
    finally:
        stop(worker_process)
    assert _stored_digest(load) == expected
    # Physically exactly once as well: after compaction every reading sits in one bucket.
    metadata.clear_caches()
    readings_compact(max_windows=10_000)
    assert sum(Bucket.objects.filter(channel_id__in=load.channel_ids()).values_list("count", flat=True)) == expected[0]


def test_a_worker_killed_with_sigkill_mid_load_loses_and_doubles_nothing(tmp_path, postgresql_url, own_rabbitmq):
    load = _load(tmp_path)
    env = {"CELERY_BROKER_URL": own_rabbitmq.url}
    first = start_worker(concurrency=2, env=env)
    sender = _sender(load, env=env)
    second = None
    try:
        wait_until(lambda: _stored_digest(load)[0] > 0, timeout=60, what="the first stored readings")
        # Mid-batch: the worker holds delivered messages it has not acknowledged yet.
        wait_until(
            lambda: own_rabbitmq.queue_counts("readings")[1] > 0, timeout=60, what="messages in the worker's hands"
        )
        stop(first, kill=True)  # SIGKILL to the whole process group: main process and pool children
        assert sender.poll() is None, "the load ended before the fault"
        second = start_worker(concurrency=2, env=env)
        _keep_sending_past_the_fault(load)
        _settle_and_check(load, sender, second)
    finally:
        stop(first, kill=True)
        stop(sender)
        if second is not None:
            stop(second)


def test_a_rabbitmq_restart_mid_load_loses_and_doubles_nothing(tmp_path, postgresql_url, own_rabbitmq):
    load = _load(tmp_path)
    env = {"CELERY_BROKER_URL": own_rabbitmq.url}
    worker_process = start_worker(concurrency=2, env=env)
    sender = _sender(load, env=env)
    try:
        wait_until(lambda: _stored_digest(load)[0] > 0, timeout=60, what="the first stored readings")
        try:
            own_rabbitmq.ctl("stop_app")
            # The broker stays down until the sender has been refused: the fault lands mid-load every time.
            wait_until(lambda: _refused(load) > 0, timeout=60, what="the sender to be refused by the stopped broker")
        finally:
            own_rabbitmq.ctl("start_app")
            own_rabbitmq.await_startup()
        _keep_sending_past_the_fault(load)
        _settle_and_check(load, sender, worker_process)
    finally:
        stop(sender)
        stop(worker_process)


def test_postgresql_refusing_connections_mid_load_loses_and_doubles_nothing(tmp_path, postgresql_url, own_rabbitmq):
    load = _load(tmp_path)
    env = {"CELERY_BROKER_URL": own_rabbitmq.url}
    name = connection.settings_dict["NAME"]
    admin_url = child_database_url().rsplit("/", 1)[0] + "/postgres"
    log = tmp_path / "worker.log"
    worker_process = start_worker(concurrency=2, log=log, env=env)
    sender = _sender(load, env=env)
    try:
        wait_until(lambda: _stored_digest(load)[0] > 0, timeout=60, what="the first stored readings")
        connection.close()
        # Only this test's database refuses connections; the server and everyone else's databases stay up.
        with psycopg.connect(admin_url, autocommit=True) as admin:
            try:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [name],
                )
                # Refused until the worker has been turned away, while the sender keeps enqueueing.
                wait_until(
                    lambda: "not currently accepting connections" in log.read_text(errors="replace"),
                    timeout=60,
                    what="the outage to reach the worker",
                )
                assert sender.poll() is None, "the load ended before the fault"
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        _keep_sending_past_the_fault(load)
        _settle_and_check(load, sender, worker_process)
    finally:
        stop(sender)
        stop(worker_process)


def test_a_redis_broker_carries_the_load_as_well(tmp_path, postgresql_url, redis_url):
    load = _load(tmp_path)
    redis_env = {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": ""}
    worker_process = start_worker(concurrency=1, env=redis_env)
    sender = _sender(load, seconds=3, env=redis_env)
    try:
        _settle_and_check(load, sender, worker_process)
    finally:
        stop(sender)
        stop(worker_process)


@pytest.mark.e2e
def test_a_rabbitmq_cluster_node_killed_mid_load_loses_and_doubles_nothing(tmp_path, postgresql_url):
    """Three nodes, a quorum queue replicated on all of them; the node holding its leader is SIGKILLed."""
    require_rabbitmq_server()
    load = _load(tmp_path)
    with rabbitmq_cluster(tmp_path / "cluster", size=3) as nodes:
        worker_process = start_worker(
            concurrency=2, env={"CELERY_BROKER_URL": _failover_url(nodes)}, log=tmp_path / "worker.log"
        )
        sender = None
        try:
            wait_until(lambda: _queue_type(nodes[0]) == "quorum", timeout=60, what="the worker to declare the queue")
            leader = next(n for n in nodes if n.name == _leader(nodes[0]))
            # Clients try the leader's node first, so the kill also cuts their connections.
            url = _failover_url([leader] + [n for n in nodes if n is not leader])
            sender = _sender(load, env={"CELERY_BROKER_URL": url})
            wait_until(lambda: _stored_digest(load)[0] > 0, timeout=60, what="the first stored readings")
            refused = _refused(load)
            leader.kill()
            wait_until(lambda: _refused(load) > refused, timeout=60, what="the sender to lose the killed node")
            _keep_sending_past_the_fault(load)
            _settle_and_check(load, sender, worker_process)
            survivor = next(n for n in nodes if n is not leader)
            assert _leader(survivor) != leader.name, "a surviving node leads the queue"
        finally:
            if sender is not None:
                stop(sender)
            stop(worker_process)


def _failover_url(nodes: list[RabbitNode]) -> str:
    return ";".join(node.url for node in nodes)


def _queue_info(node: RabbitNode, column: str) -> str:
    for line in node.ctl("list_queues", "name", column).splitlines():
        name, _, value = line.partition("\t")
        if name == "readings":
            return value.strip()
    return ""


def _queue_type(node: RabbitNode) -> str:
    return _queue_info(node, "type")


def _leader(node: RabbitNode) -> str:
    return _queue_info(node, "leader")
