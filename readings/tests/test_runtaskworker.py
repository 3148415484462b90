"""`make run`'s worker in the embedded mode: a real process that rolls up what the gateway stored."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from portal.management.commands.runplatform import platform_processes
from readings.tests.processes import ROOT, stop, wait_until

SEED = """
import time
from readings.services import readings_enqueue
from readings.tests.factories import batch_for, device_with_channels
device, power, energy = device_with_channels()
now = int(time.time() * 1000)
readings_enqueue(batches=[batch_for(device, [power, energy], [now - 4000, now - 2000], [[1.0, 3.0], [10.0, 12.0]])])
"""


def _embedded_env(data_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")}
    env.update({"ENERGYBOX_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "energybox.settings.local"})
    return env


def test_make_run_starts_the_task_worker():
    names = [name for name, _ in platform_processes(host="127.0.0.1", port=8000)]
    assert "worker" in names


def test_the_embedded_worker_rolls_up_readings_stored_in_process(tmp_path):
    env = _embedded_env(tmp_path)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)  # noqa: S603
    # Embedded ingest: the batch is in SQLite when readings_enqueue returns, no worker needed.
    subprocess.run([*manage, "shell", "-c", SEED], cwd=ROOT, env=env, check=True, timeout=120)  # noqa: S603
    database = tmp_path / "energybox.sqlite3"

    def count(table: str) -> int:
        with sqlite3.connect(database, timeout=10) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    assert count("readings_bucket") == 2 and count("readings_rollup") == 0
    worker = subprocess.Popen(  # noqa: S603
        [*manage, "runtaskworker", "--loglevel", "WARNING"], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        wait_until(lambda: count("readings_rollup") == 8, timeout=90, what="the worker's periodic rollup refresh")
        assert count("readings_dirty") == 0
    finally:
        stop(worker)
    assert (tmp_path / "queue").is_dir()
