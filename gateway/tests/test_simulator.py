"""The simulator's loads look like the real thing: cycles, schedules, counters that reset."""

from __future__ import annotations

import numpy as np

from gateway.loads import FuelPumps, Household, Lighting, Refrigeration, load_model
from gateway.simulator import ChannelSpec, DeviceSpec, Meter

DAY = 1_764_115_200_000  # 2025-11-26T00:00Z
T = DAY + 2000 * np.arange(43_200, dtype=np.int64)  # one day of 2-second samples
CHANNELS = (
    ChannelSpec("active_power", 1.0, "L1"),
    ChannelSpec("voltage", 0.1, "L1"),
    ChannelSpec("current", 0.01, "L1"),
    ChannelSpec("active_energy", 1.0, "total"),
    ChannelSpec("power_factor", 0.001, "total"),
    ChannelSpec("temperature", 0.01),
)


def test_a_compressor_cycles_on_and_off_many_times_a_day():
    power = Refrigeration(np.random.default_rng(1)).power(T)
    on = power > 3000
    starts = np.count_nonzero(on[1:] & ~on[:-1])
    assert 40 < starts < 150
    assert power.min() > 300  # the fans never stop


def test_lighting_follows_the_opening_hours_and_a_canopy_the_night():
    noon = (T >= DAY + 12 * 3_600_000) & (T < DAY + 13 * 3_600_000)
    three_am = (T >= DAY + 2 * 3_600_000) & (T < DAY + 3 * 3_600_000)
    shop = Lighting(np.random.default_rng(1)).power(T)
    canopy = load_model("lighting", np.random.default_rng(1), name="Canopy lights").power(T)
    assert shop[noon].mean() > 10 * shop[three_am].mean()
    assert canopy[three_am].mean() > 10 * canopy[noon].mean()


def test_fuel_pumps_and_households_have_random_events():
    pumps = FuelPumps(np.random.default_rng(2))
    power = np.concatenate([pumps.power(T[i : i + 15]) for i in range(0, len(T), 15)])
    assert (power > 900).any() and (power < 300).any()
    home = Household(np.random.default_rng(3))
    power = np.concatenate([home.power(T[i : i + 15]) for i in range(0, len(T), 15)])
    assert power.max() > 1500 and np.median(power) < 400


def test_the_meter_keeps_an_energy_counter_that_grows_and_sometimes_resets():
    spec = DeviceSpec("SN-1", b"\0" * 32, CHANNELS, load_kind="refrigeration")
    meter = Meter(spec, np.random.default_rng(4), reset_chance=0.0)
    first = meter.sample(T[:15], 2000)
    second = meter.sample(T[15:30], 2000)
    energy = np.concatenate([first[3], second[3]])
    assert (np.diff(energy) >= 0).all() and energy[-1] > energy[0]
    assert 2200 < first[1].mean() < 2400  # 230 V in 0.1 V
    resetting = Meter(spec, np.random.default_rng(4), reset_chance=1.0)
    raw = resetting.sample(T[:15], 2000)
    assert resetting.counter_resets == 1 and raw[3].min() == 0


def test_devices_reconnect_with_jittered_exponential_backoff():
    from gateway.simulator import reconnect_backoff

    for failures, nominal in ((1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (40, 10.0)):
        delays = [reconnect_backoff(failures, base_s=0.5, max_s=10.0) for _ in range(200)]
        assert all(0.5 * nominal <= d <= 1.5 * nominal for d in delays)
        assert max(delays) - min(delays) > 0.5 * nominal  # spread, so a fleet does not reconnect in step


async def test_a_device_that_cannot_connect_backs_off(tmp_path):
    import socket

    from gateway.tests.helpers import simulated, tls_contexts

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    _, ctx = tls_contexts(tmp_path)
    spec = DeviceSpec("SN-1", b"\0" * 32, CHANNELS, load_kind="refrigeration")
    device = simulated(spec, port, ctx, reconnect_delay_s=0.01, reconnect_max_s=0.4)
    await device.run(duration_s=2.0)
    # 0.01, 0.02, 0.04 … capped at 0.4 (×0.5–1.5): about a dozen attempts in 2 s, not the ~130 of a fixed delay.
    assert 4 <= device.stats.reconnects <= 25


def test_a_device_that_was_live_reconnects_after_a_quarter_of_the_delay(tmp_path):
    from gateway.simulator import LIVE_RECONNECT_SHARE
    from gateway.tests.helpers import simulated, tls_contexts

    _, ctx = tls_contexts(tmp_path)
    spec = DeviceSpec("SN-1", b"\0" * 32, CHANNELS, load_kind="refrigeration")
    device = simulated(spec, 1, ctx, reconnect_delay_s=1.0, reconnect_max_s=60.0)
    for failures, nominal in ((1, 1.0), (3, 4.0)):
        device._failures = failures
        device.live = False
        batching = [device.reconnect_wait_s() for _ in range(200)]
        device.live = True
        live = [device.reconnect_wait_s() for _ in range(200)]
        assert all(0.5 * nominal <= d <= 1.5 * nominal for d in batching)
        share = LIVE_RECONNECT_SHARE * nominal
        assert all(0.5 * share <= d <= 1.5 * share for d in live)
        assert max(live) < min(batching)  # every live device is back before any batching one
