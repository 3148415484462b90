from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from portal.livestate import INTERVAL_MS, ChannelInfo, Coalescer, DemandTracker, FacilityPower, interval_start_ms

BERLIN = ZoneInfo("Europe/Berlin")


def ms(text: str, tz: ZoneInfo = BERLIN) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def test_the_first_batch_of_a_device_goes_out_at_once():
    c = Coalescer(interval_s=2)
    out = c.offer(device_id=1, ts=[1000], values={"5": [1.0]}, now=100.0)
    assert out is not None and out.ts == [1000] and out.values == {"5": [1.0]}


def test_batches_sooner_than_the_interval_are_merged_and_released_when_it_is_up():
    c = Coalescer(interval_s=2)
    c.offer(device_id=1, ts=[0], values={"5": [0.0]}, now=100.0)
    assert c.offer(device_id=1, ts=[500], values={"5": [1.0]}, now=100.5) is None
    assert c.offer(device_id=1, ts=[1000], values={"6": [9.0]}, now=101.0) is None
    assert c.next_due() == 102.0
    assert c.due(now=101.9) == []
    [(device_id, merged)] = c.due(now=102.0)
    assert device_id == 1 and merged.ts == [500, 1000]
    # A channel missing from a batch gets a gap, so every series is as long as the timestamps.
    assert merged.values == {"5": [1.0, None], "6": [None, 9.0]}
    assert c.next_due() is None


def test_a_device_on_its_2_second_sample_schedule_is_not_held_for_network_jitter():
    c = Coalescer(interval_s=2)
    c.offer(device_id=1, ts=[0], values={}, now=100.0)
    # The previous frame came late, this one on time: 0.6 s of wall time apart, 2 s of sample time.
    assert c.offer(device_id=1, ts=[2000], values={}, now=100.6) is not None


def test_sample_time_alone_cannot_push_a_device_past_the_limit():
    c = Coalescer(interval_s=2)
    c.offer(device_id=1, ts=[0], values={}, now=100.0)
    # Timestamps jumping ahead do not buy a message within 1/4 of an interval of the last one.
    assert c.offer(device_id=1, ts=[60_000], values={}, now=100.4) is None
    assert c.next_due() == 100.5
    assert c.due(now=100.49) == []
    [(_, held)] = c.due(now=100.5)
    assert held.ts == [60_000]


def test_a_device_held_behind_a_late_frame_catches_up_instead_of_staying_late():
    c = Coalescer(interval_s=2)
    c.offer(device_id=1, ts=[0], values={}, now=101.9)  # frame 0 came 1.9 s late
    released = []
    for k in range(1, 4):  # the next frames come on time, every 2 s from 102.0
        now = 100.0 + 2 * k
        out = c.offer(device_id=1, ts=[2000 * k], values={}, now=now)
        if out is None:
            now = c.next_due()
            [(_, out)] = c.due(now=now)
        released.append((out.ts, round(now - (100.0 + 2 * k), 3)))
    # Frame 1 waits 0.4 s (to 1/4 interval after frame 0), then the device is back on time.
    assert released == [([2000], 0.4), ([4000], 0.0), ([6000], 0.0)]


def test_devices_are_limited_independently():
    c = Coalescer(interval_s=2)
    c.offer(device_id=1, ts=[0], values={}, now=100.0)
    assert c.offer(device_id=2, ts=[0], values={}, now=100.1) is not None


def test_a_flooding_device_loses_its_oldest_samples_not_the_client():
    c = Coalescer(interval_s=2, max_samples=5)
    c.offer(device_id=1, ts=[0], values={}, now=100.0)
    for i in range(1, 20):
        c.offer(device_id=1, ts=[i], values={"5": [float(i)]}, now=100.1)
    [(_, merged)] = c.due(now=102.0)
    assert merged.ts == [15, 16, 17, 18, 19]
    assert merged.values["5"] == [15.0, 16.0, 17.0, 18.0, 19.0]


def meter(channel_id: int, device_id: int, load_id: int | None, phase: str, unit: str = "W") -> ChannelInfo:
    return ChannelInfo(
        id=channel_id, device_id=device_id, load_id=load_id, quantity="active_power", unit=unit, phase=phase
    )


def test_a_three_phase_meter_counts_its_total_channel_not_the_phases_as_well():
    power = FacilityPower(
        channels=[meter(1, 10, 7, "L1"), meter(2, 10, 7, "L2"), meter(3, 10, 7, "L3"), meter(4, 10, 7, "total")]
    )
    power.update({"1": [1000.0], "2": [1000.0], "3": [1000.0], "4": [3000.0]})
    assert power.snapshot().total_kw == 3.0


def test_without_a_total_channel_the_phases_are_added_up_and_kw_units_are_respected():
    power = FacilityPower(channels=[meter(1, 10, 7, "L1"), meter(2, 10, 7, "L2", unit="kW")])
    power.update({"1": [500.0], "2": [1.5]})
    assert power.snapshot().loads_kw == {7: 2.0}


def test_the_mains_load_is_the_facility_total_when_there_is_one():
    power = FacilityPower(channels=[meter(1, 10, 1, "total"), meter(2, 11, 2, "total")], mains_load_ids=[1])
    power.update({"1": [9000.0], "2": [2000.0]})
    snapshot = power.snapshot()
    assert snapshot.total_kw == 9.0 and snapshot.loads_kw == {1: 9.0, 2: 2.0}


def test_only_active_power_counts_and_gaps_keep_the_last_value():
    voltage = ChannelInfo(id=3, device_id=10, load_id=1, quantity="voltage", unit="V", phase="L1")
    power = FacilityPower(channels=[meter(1, 10, 1, "L1"), voltage])
    power.update({"1": [800.0, None], "3": [230.0]})
    assert power.snapshot().total_kw == 0.8
    assert power.update({"1": [None]}) is False
    assert power.snapshot().total_kw == 0.8


def test_intervals_are_aligned_in_the_facilitys_local_time():
    kathmandu = ZoneInfo("Asia/Kathmandu")  # UTC+5:45: its quarter hours are not UTC's
    assert interval_start_ms(ms("2026-11-26T10:07:00", kathmandu), kathmandu) == ms("2026-11-26T10:00:00", kathmandu)
    assert interval_start_ms(ms("2026-11-26T10:15:00"), BERLIN) == ms("2026-11-26T10:15:00")


def test_the_demand_projection_holds_the_current_load_to_the_end_of_the_interval():
    tracker = DemandTracker(tz=BERLIN)
    start = ms("2026-11-26T10:00:00")
    for step in range(10):  # 5 minutes at 10 kW, a sample every 30 s
        tracker.add(ts_ms=start + step * 30_000, total_kw=10.0)
    tracker.add(ts_ms=start + 5 * 60_000, total_kw=40.0)
    demand = tracker.demand(now_ms=start + 5 * 60_000)
    assert demand is not None
    assert demand.energy_kwh == pytest.approx(10 * 5 / 60)
    # 5 min at 10 kW, then 10 min at 40 kW: an average of 30 kW over the quarter hour.
    assert demand.projection_kw == pytest.approx(30.0)


def test_a_new_interval_starts_from_zero_and_long_gaps_are_not_integrated():
    tracker = DemandTracker(tz=BERLIN)
    start = ms("2026-11-26T10:00:00")
    tracker.add(ts_ms=start + INTERVAL_MS - 20_000, total_kw=12.0)
    tracker.add(ts_ms=start + INTERVAL_MS + 30_000, total_kw=12.0)
    demand = tracker.demand(now_ms=start + INTERVAL_MS + 30_000)
    assert demand is not None and demand.interval_start_ms == start + INTERVAL_MS
    assert demand.energy_kwh == pytest.approx(12 * 30 / 3600)
    tracker.add(ts_ms=start + INTERVAL_MS + 10 * 60_000, total_kw=1.0)  # 9.5 minutes of silence
    assert tracker.demand(now_ms=start + INTERVAL_MS + 10 * 60_000).energy_kwh == pytest.approx(12 * 30 / 3600)
