"""Readings stamped more than READINGS_MAX_FUTURE_S ahead of the gateway's clock are refused whole."""

from __future__ import annotations

import time

import pytest

from gateway import protocol as p
from gateway.tests.helpers import RawClient, Recorder, batch_payload, nack_of, running_gateway

pytestmark = pytest.mark.django_db(transaction=True)
SAMPLES = 15  # batch_payload's default: 15 samples 2 s apart
SPAN_MS = (SAMPLES - 1) * 2000


def _payload_ending_ahead(seconds: float) -> bytes:
    last_ms = int(time.time() * 1000 + seconds * 1000)
    return batch_payload(12, SAMPLES, start_ms=last_ms - SPAN_MS)


async def test_a_batch_from_a_clock_minutes_ahead_is_refused_and_nothing_of_it_stored(meter, tmp_path, settings):
    settings.READINGS_MAX_FUTURE_S = 120
    recorder = Recorder()
    async with running_gateway(tmp_path, enqueue=recorder) as (_, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(meter[1].serial, meter[1].private_key)
        seq = client.send(p.FrameType.READINGS, _payload_ending_ahead(600))  # ten minutes ahead
        nack = nack_of(await client.frame())
        assert (nack.code, nack.ref_seq, nack.fatal) == (p.ErrorCode.BAD_BATCH, seq, False)
        assert "in the future (limit 120 s)" in nack.message
        # A clock a minute ahead is within the bound: acked and stored. The connection stayed usable.
        seq = client.send(p.FrameType.READINGS, _payload_ending_ahead(60))
        assert p.Ack.decode((await client.frame()).payload).ref_seq == seq
        client.close()
    assert len(recorder.batches) == 1
    assert int(recorder.batches[0].timestamps_ms[-1]) < time.time() * 1000 + 120_000


async def test_the_bound_comes_from_the_setting(meter, tmp_path, settings):
    settings.READINGS_MAX_FUTURE_S = 3600
    recorder = Recorder()
    async with running_gateway(tmp_path, enqueue=recorder) as (_, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(meter[1].serial, meter[1].private_key)
        seq = client.send(p.FrameType.READINGS, _payload_ending_ahead(600))
        assert p.Ack.decode((await client.frame()).payload).ref_seq == seq
        client.close()
    assert len(recorder.batches) == 1
