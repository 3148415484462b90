"""Live on demand: a device batches until someone watches it, then sends every sample at once."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.control import LIVE
from gateway import protocol as p
from gateway.livemode import MAX_LEASE_S, LiveModes
from gateway.tests.helpers import FAST, Recorder, running_gateway, simulated
from portal.tests.live import communicator, session_cookie, snapshot_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def modes(*, hold_over_s: float = 10.0) -> tuple[LiveModes, Clock, list[tuple[int, str]]]:
    clock, pushed = Clock(), []

    def push(device_id: int, entries: dict[str, str]) -> bool:
        pushed.append((device_id, entries[p.CONFIG_MODE]))
        return True

    return LiveModes(push=push, hold_over_s=hold_over_s, clock=clock), clock, pushed


def lease(viewer: str, seconds: float) -> dict:
    return {"type": LIVE, "viewer": viewer, "lease_s": seconds}


def test_it_switches_once_per_watch_and_back_after_the_hold_over():
    live, clock, pushed = modes(hold_over_s=10)
    live.connected(7)
    assert pushed == []  # nobody watches: the device batches
    live.on_command(7, lease("a", 30))
    live.on_command(7, lease("b", 30))
    live.on_command(7, lease("a", 30))  # a heartbeat changes nothing on the wire
    assert pushed == [(7, "live")]
    live.on_command(7, lease("a", 0))
    clock.now += 60
    live.on_command(7, lease("b", 30))  # b is still watching
    live.tick()
    assert pushed == [(7, "live")]
    live.on_command(7, lease("b", 0))  # the last viewer left
    clock.now += 9
    live.tick()
    assert pushed == [(7, "live")]
    clock.now += 1
    live.tick()
    assert pushed == [(7, "live"), (7, "batch")]
    assert live.live == set()


def test_a_viewer_who_comes_back_within_the_hold_over_costs_no_switch():
    live, clock, pushed = modes(hold_over_s=10)
    live.connected(7)
    live.on_command(7, lease("a", 30))
    live.on_command(7, lease("a", 0))
    clock.now += 5
    live.tick()
    live.on_command(7, lease("c", 30))
    clock.now += 20
    live.tick()
    assert pushed == [(7, "live")]


def test_the_lease_of_a_crashed_web_process_runs_out():
    live, clock, pushed = modes(hold_over_s=5)
    live.connected(7)
    live.on_command(7, lease("crashed", 30))
    clock.now += 29
    live.tick()
    assert live.watched(7) and pushed == [(7, "live")]
    clock.now += 1
    live.tick()
    assert not live.watched(7)
    clock.now += 5
    live.tick()
    assert pushed == [(7, "live"), (7, "batch")]


def test_a_reconnect_is_switched_to_live_again_while_watched():
    live, clock, pushed = modes()
    live.connected(7)
    live.on_command(7, lease("a", 30))
    live.disconnected(7)
    live.on_command(7, lease("a", 30))  # a heartbeat while the device is away sends nothing
    assert pushed == [(7, "live")]
    live.connected(7)  # every connection starts batching
    assert pushed == [(7, "live"), (7, "live")]
    live.disconnected(7)
    clock.now += 31
    live.connected(7)  # the viewer is gone by now
    assert pushed == [(7, "live"), (7, "live")]


@pytest.mark.parametrize(
    "message",
    [
        {"type": LIVE, "lease_s": 30},
        {"type": LIVE, "viewer": "", "lease_s": 30},
        {"type": LIVE, "viewer": "x" * 201, "lease_s": 30},
        {"type": LIVE, "viewer": "a", "lease_s": -1},
        {"type": LIVE, "viewer": "a", "lease_s": "30"},
        {"type": LIVE, "viewer": "a", "lease_s": float("nan")},
        {"type": LIVE, "viewer": "a", "lease_s": True},
    ],
)
def test_it_drops_a_malformed_live_command(message):
    live, _, pushed = modes()
    live.connected(7)
    live.on_command(7, message)
    assert pushed == [] and not live.watched(7)


def test_a_lease_is_capped():
    live, clock, _ = modes()
    live.connected(7)
    live.on_command(7, lease("a", 10**9))
    clock.now += MAX_LEASE_S
    assert not live.watched(7)


# --- end to end: a websocket viewer, the channel layer, the gateway and the simulated device ---------


async def _until(predicate, *, timeout: float = 8.0, what: str) -> float:  # noqa: ASYNC109
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _readings_of(ws, device_id: int) -> dict:
    while True:
        message = await ws.receive_json_from(timeout=8)
        if message["type"] == "readings" and message["device_id"] == device_id:
            return message


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.e2e
@pytest.mark.usefixtures("live_layer", "close_thread_connections")
async def test_a_viewer_makes_the_device_live_with_its_buffer_and_batching_resumes_after_the_hold_over(
    meter, tmp_path, settings
):
    settings.LIVE_DEMAND_HEARTBEAT_S = 0.5
    settings.LIVE_DEMAND_LEASE_S = 3.0
    issued, spec = meter
    device = issued.device
    cookie = await sync_to_async(
        lambda: session_cookie(MembershipFactory(tenant=device.facility.tenant, role=Role.ADMIN).user)
    )()
    recorder = Recorder()
    config = dataclasses.replace(FAST, live_hold_over_s=1.0, idle_timeout_s=60, live_ack_every=2, live_ack_within_s=0.5)
    interval = 2000
    # The device batches 4 minutes at a time and holds 100 s of samples when the viewer arrives.
    start = (time.time_ns() // 1_000_000 // interval) * interval - 100_000
    async with running_gateway(tmp_path, enqueue=recorder, config=config, channel_layer=get_channel_layer()) as (
        gw,
        port,
        ctx,
    ):
        sim = simulated(spec, port, ctx, realtime=True, batch=120, interval_ms=interval, start_ms=start, record=True)
        task = asyncio.create_task(sim.run())
        await _until(lambda: device.pk in gw.control.members, what="the gateway to join the control group")
        assert not sim.acked and not sim.live

        ws = communicator(f"/ws/facilities/{device.facility_id}/live", cookie=cookie)
        connected, _ = await ws.connect()
        assert connected
        watched_at = time.monotonic()
        await snapshot_of(ws)
        flushed = await _readings_of(ws, device.pk)
        assert time.monotonic() - watched_at < 5, "the device took too long to go live"
        assert sim.live
        # The immediate picture: every sample buffered since the last batch, at 2 s.
        assert flushed["ts"][0] == start
        assert len(flushed["ts"]) >= 50
        assert set(np.diff(flushed["ts"]).tolist()) == {interval}
        # Then one sample per frame, as it is taken.
        await _until(lambda: len(sim.acked) >= 3, what="live frames")
        assert [b.raw.shape[1] for b in sim.acked[1:3]] == [1, 1]
        # ... in compact frames (protocol version 2), stored like any other.
        assert sim.version == p.COMPACT_VERSION and sim.compact_frames >= 2
        assert gw.stats["compact_frames"] == sim.compact_frames

        # A reconnect keeps the mode: the gateway says live again on the new connection.
        sim.drop_connection()
        await _until(lambda: sim.stats.reconnects >= 1 and sim.live, what="live again after the reconnect")
        acked = len(sim.acked)
        await _until(lambda: len(sim.acked) > acked, what="a live frame after the reconnect")
        assert sim.acked[-1].raw.shape[1] == 1

        # The viewer leaves: after the hold-over the device batches again.
        await ws.disconnect()
        left_at = time.monotonic()
        await _until(lambda: not sim.live, what="batching again")
        assert 1.0 <= time.monotonic() - left_at < 4
        assert sim.mode_switches[-1][1] is False
        sim.stop()
        await task

    # No reading lost or doubled: what the gateway took is exactly the device's ledger.
    ledger = {
        int(t): b.raw[:, k]
        for b in sim.acked
        for k, t in enumerate(b.start_ms + b.interval_ms * np.arange(b.raw.shape[1]))
    }
    ledger_ts = sorted(ledger)
    assert ledger_ts == list(range(start, ledger_ts[-1] + 1, interval))
    assert len(ledger_ts) == sum(b.raw.shape[1] for b in sim.acked)
    taken: dict[int, list[float]] = {}
    for batch in recorder.batches:
        for k, t in enumerate(batch.timestamps_ms.tolist()):
            taken.setdefault(int(t), []).append(float(batch.values[0, k]))
    assert set(taken) >= set(ledger_ts)
    # Beyond the acked ledger only what was sent when the device stopped, its ack still on the way.
    in_flight = {b.start_ms + b.interval_ms * k for b in sim.unacked.values() for k in range(b.raw.shape[1])}
    assert set(taken) - set(ledger_ts) <= in_flight
    power_scale = spec.channels[0].scale
    for t in ledger_ts:
        # A batch whose ack was lost in the drop comes again (RESEND); the store keeps it once.
        assert len(set(taken[t])) == 1
        assert taken[t][0] == pytest.approx(float(ledger[t][0]) * power_scale)
    assert sum(len(v) > 1 for v in taken.values()) <= sim.stats.resent
