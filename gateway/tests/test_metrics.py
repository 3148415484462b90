"""A gateway's Prometheus metrics: frames, NACKs by code, handshakes, open connections, on its exporter port."""

from __future__ import annotations

import urllib.request

import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from gateway import protocol as p
from gateway.tests.helpers import RawClient, Recorder, batch_payload, nack_of, running_gateway
from readings.tests.brokers import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{v}" for _, v in sorted(sample.labels.items()))
            samples[f"{sample.name}[{labels}]" if labels else sample.name] = sample.value
    return samples


async def test_the_exporter_counts_frames_nacks_by_code_handshakes_and_open_connections(meter, tmp_path, settings):
    settings.GATEWAY_METRICS_PORT = port = free_port()
    scrape = sync_to_async(_scrape, thread_sensitive=False)
    async with running_gateway(tmp_path, enqueue=Recorder()) as (_, gateway_port, ctx):
        client = await RawClient.connect(gateway_port, ctx)
        await client.handshake(meter[1].serial, meter[1].private_key)
        before = await scrape(port)
        client.send(p.FrameType.READINGS, batch_payload(12))
        await client.frame()
        client.send(p.FrameType.READINGS, batch_payload(13))  # a channel the meter lacks
        assert nack_of(await client.frame()).code == p.ErrorCode.BAD_BATCH
        during = await scrape(port)
        client.close()
    # The gateway counts a readings frame once it decoded; the refused one shows as its NACK.
    assert during["energybox_gateway_frames_total"] - before.get("energybox_gateway_frames_total", 0) == 1
    nacks = "energybox_gateway_nacks_total[bad_batch]"
    assert during[nacks] - before.get(nacks, 0) == 1
    assert (
        during["energybox_gateway_readings_acked_total"] - before.get("energybox_gateway_readings_acked_total", 0)
        == 12 * 15
    )
    assert during["energybox_gateway_handshakes_total"] >= 1
    assert during["energybox_gateway_connections"] == 1
    assert during["energybox_gateway_devices_online"] == 1
