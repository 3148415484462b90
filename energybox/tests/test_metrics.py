"""`/metrics` (Prometheus text) and structured JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from readings.services import readings_enqueue
from readings.tests.factories import batch_for, device_with_channels
from readings.tests.processes import ROOT

pytestmark = pytest.mark.django_db


def scrape(client, **headers) -> dict[str, float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@pytest.fixture
def in_process_ingest():
    """The embedded mode's ingest (the task runs in the caller), whatever broker the suite has."""
    from energybox.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def test_metrics_show_the_enqueue_latency_and_the_age_of_the_newest_reading(client, in_process_ingest):
    device, power, energy = device_with_channels()
    before = scrape(client).get("energybox_ingest_enqueue_seconds_count", 0.0)
    newest_ms = int(time.time() * 1000) - 30_000
    stamps = newest_ms - np.arange(5, dtype=np.int64)[::-1] * 2_000
    readings_enqueue(batches=[batch_for(device, [power, energy], stamps, np.ones((2, 5)))])  # embedded: stored now
    samples = scrape(client)
    assert samples["energybox_ingest_enqueue_seconds_count"] == before + 1
    expected_age = time.time() - newest_ms / 1000
    assert samples["energybox_ingest_lag_seconds"] == pytest.approx(expected_age, abs=2.0)
    # Nothing rolled up yet: the rollups trail by all of the recent readings.
    assert samples["energybox_rollup_lag_seconds"] > 0


def test_metrics_need_the_token_when_one_is_configured(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert "energybox_ingest_enqueue_seconds_count" in scrape(client, Authorization="Bearer s3cret-scrape-token")


def test_log_format_json_writes_one_json_object_per_line(tmp_path):
    # A fresh process, configured from the environment only, as a deployment would be.
    code = (
        "import django, logging; django.setup();"
        "logging.getLogger('energybox.test').warning('device %s offline', 'SN-1')"
    )
    env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
    env |= {
        "LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "energybox.settings.local",
        "ENERGYBOX_DATA_DIR": str(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["message"] == "device SN-1 offline"
    assert (record["level"], record["logger"]) == ("WARNING", "energybox.test")
