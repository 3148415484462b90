"""The live websockets, end to end through the real ASGI stack and the real channel layer (Redis in CI)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.models import Device, Load
from devices.tests.factories import DeviceFactory, FacilityFactory, LoadFactory
from portal.livestate import Coalescer
from portal.tests.live import (
    batch_of,
    closed_with,
    communicator,
    publish_batches,
    publish_readings,
    publish_status,
    publish_statuses,
    session_cookie,
    snapshot_of,
)
from readings.live import device_status, facility_group

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.services,
    pytest.mark.usefixtures("live_layer", "close_thread_connections"),
]


@pytest.fixture(autouse=True)
def fast_interval(settings):  # type: ignore[no-untyped-def]
    # The 2-second rule, scaled down so the suite stays fast; the rule itself is the same.
    settings.LIVE_DEVICE_INTERVAL_S = 0.4


def make_site(*, role: str = Role.ADMIN, granted: bool = True) -> dict:
    """A facility with a mains meter and a refrigeration meter, and a signed-in member of its tenant."""
    facility = FacilityFactory(name="Store")
    mains = LoadFactory(facility=facility, name="Mains", kind=Load.Kind.MAINS)
    fridge = LoadFactory(facility=facility, name="Fridges", kind=Load.Kind.REFRIGERATION)
    main_meter = DeviceFactory(facility=facility, name="Main meter")
    fridge_meter = DeviceFactory(facility=facility, name="Fridge meter")
    main_meter.channels.update(load=mains)
    fridge_meter.channels.update(load=fridge)
    membership = MembershipFactory(
        tenant=facility.tenant, role=role, facilities=[facility] if role == Role.FACILITY_MANAGER and granted else []
    )
    power = {d.pk: d.channels.get(quantity="active_power").pk for d in (main_meter, fridge_meter)}
    return {
        "facility": facility,
        "main_meter": main_meter,
        "fridge_meter": fridge_meter,
        "power": power,
        "cookie": session_cookie(membership.user),
        "user": membership.user,
    }


site = database_sync_to_async(make_site)


async def connect(path: str, cookie: bytes | None):
    ws = communicator(path, cookie=cookie)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    return ws


# --- Refusals ---------------------------------------------------------------------------------


async def test_an_unauthenticated_socket_is_refused_with_4401():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=None)
    error = await closed_with(ws, 4401)
    assert "sign in" in error["reason"].lower()


async def test_a_forged_session_cookie_is_refused_with_4401():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=b"sessionid=forged-not-a-session")
    await closed_with(ws, 4401)


async def test_another_tenants_facility_is_refused_with_4403_and_gets_no_data():
    mine, theirs = await site(), await site()
    ws = await connect(f"/ws/facilities/{theirs['facility'].pk}/live", cookie=mine["cookie"])
    error = await closed_with(ws, 4403)
    assert "no such facility" in error["reason"].lower()
    await publish_readings(
        device_id=theirs["main_meter"].pk,
        facility_id=theirs["facility"].pk,
        ts=[int(time.time() * 1000)],
        values={theirs["power"][theirs["main_meter"].pk]: [1000.0]},
    )
    assert await ws.receive_nothing(timeout=0.3)


async def test_a_missing_facility_is_refused_exactly_like_a_foreign_one():
    s = await site()
    ws = await connect("/ws/facilities/987654321/live", cookie=s["cookie"])
    await closed_with(ws, 4403)


async def test_another_tenants_device_is_refused_with_4403():
    mine, theirs = await site(), await site()
    ws = await connect(f"/ws/devices/{theirs['main_meter'].pk}/live", cookie=mine["cookie"])
    await closed_with(ws, 4403)


async def test_a_facility_outside_a_managers_grant_is_refused_with_4403():
    s = await site(role=Role.FACILITY_MANAGER, granted=False)
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await closed_with(ws, 4403)


async def test_a_manager_sees_the_facility_granted_to_them():
    s = await site(role=Role.FACILITY_MANAGER, granted=True)
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    snapshot = await snapshot_of(ws)
    assert snapshot["facility"]["id"] == s["facility"].pk
    await ws.disconnect()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "launch-missiles"}',
        '{"type": "subscribe", "facilities": "all"}',
        '{"type": "subscribe", "facilities": [true]}',
        '{"type": "subscribe", "facilities": [-4]}',
        '{"type": "subscribe"}',
        '{"type": "ping", "id": "x"}',
    ],
)
async def test_a_malformed_subscription_message_closes_the_park_socket_with_4400(text):
    s = await site()
    ws = await connect("/ws/facilities/live", cookie=s["cookie"])
    await ws.send_to(text_data=text)
    await closed_with(ws, 4400)


async def test_a_dashboard_takes_no_subscription_message():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    await ws.send_json_to({"type": "subscribe", "facilities": [s["facility"].pk]})
    await closed_with(ws, 4400)


async def test_a_binary_message_closes_with_4400():
    s = await site()
    ws = await connect("/ws/facilities/live", cookie=s["cookie"])
    await ws.send_to(bytes_data=b"\x00\x01")
    await closed_with(ws, 4400)


@pytest.mark.parametrize("path", ["/ws/facilities/live", "facility"])
async def test_an_oversized_message_closes_with_1009(path):
    s = await site()
    if path == "facility":
        path = f"/ws/facilities/{s['facility'].pk}/live"
    ws = await connect(path, cookie=s["cookie"])
    if path != "/ws/facilities/live":
        await snapshot_of(ws)
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "facilities": list(range(1, 2000))}))
    error = await closed_with(ws, 1009)
    assert "4096 bytes" in error["reason"]


async def test_the_park_refuses_a_subscription_to_another_tenants_facility():
    mine, theirs = await site(), await site()
    ws = await connect("/ws/facilities/live", cookie=mine["cookie"])
    await ws.send_json_to({"type": "subscribe", "facilities": [mine["facility"].pk, theirs["facility"].pk]})
    await closed_with(ws, 4403)


async def test_the_park_refuses_a_facility_outside_a_managers_grant():
    s = await site(role=Role.FACILITY_MANAGER, granted=False)
    ws = await connect("/ws/facilities/live", cookie=s["cookie"])
    await ws.send_json_to({"type": "subscribe", "facilities": [s["facility"].pk]})
    await closed_with(ws, 4403)


# --- Live data ----------------------------------------------------------------------------------


async def test_a_dashboard_gets_a_snapshot_then_live_readings_with_the_facility_kw():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    snapshot = await snapshot_of(ws)
    assert {d["name"] for d in snapshot["devices"]} == {"Main meter", "Fridge meter"}
    assert {load["name"] for load in snapshot["loads"]} == {"Mains", "Fridges"}
    assert snapshot["power"]["total_kw"] is None
    now = int(time.time() * 1000)
    main, fridge = s["main_meter"].pk, s["fridge_meter"].pk
    await publish_readings(
        device_id=fridge, facility_id=s["facility"].pk, ts=[now], values={s["power"][fridge]: [800.0]}
    )
    await publish_readings(device_id=main, facility_id=s["facility"].pk, ts=[now], values={s["power"][main]: [5200.0]})
    first = await ws.receive_json_from(timeout=5)
    second = await ws.receive_json_from(timeout=5)
    assert first["type"] == second["type"] == "readings"
    assert first["device_id"] == fridge and first["values"] == {str(s["power"][fridge]): [800.0]}
    assert first["ts"] == [now]
    # The main meter measures the whole building, fridges included: the total is the mains, not the sum.
    assert second["power"]["total_kw"] == 5.2
    loads = {load.name: load.pk for load in await database_sync_to_async(lambda: list(Load.objects.all()))()}
    assert second["power"]["loads"][str(loads["Fridges"])] == 0.8
    assert second["demand"]["projection_kw"] == pytest.approx(5.2)
    await ws.disconnect()


async def test_readings_of_another_facility_never_reach_the_socket():
    mine, theirs = await site(), await site()
    ws = await connect(f"/ws/facilities/{mine['facility'].pk}/live", cookie=mine["cookie"])
    await snapshot_of(ws)
    now = int(time.time() * 1000)
    other = theirs["main_meter"].pk
    await publish_readings(
        device_id=other, facility_id=theirs["facility"].pk, ts=[now], values={theirs["power"][other]: [1.0]}
    )
    # Even a message wrongly addressed to my facility's group, for a device that is not mine, is dropped.
    await publish_readings(
        device_id=other, facility_id=mine["facility"].pk, ts=[now], values={theirs["power"][other]: [1.0]}
    )
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_a_device_sending_faster_than_the_interval_gets_one_merged_message_per_interval(settings):
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    device, channel = s["main_meter"].pk, s["power"][s["main_meter"].pk]
    base = int(time.time() * 1000)
    for i in range(6):  # six batches 50 ms of sample time apart, all inside one 0.4-s interval
        await publish_readings(
            device_id=device, facility_id=s["facility"].pk, ts=[base + 50 * i], values={channel: [float(i)]}
        )
    first = await ws.receive_json_from(timeout=5)
    started = time.monotonic()
    merged = await ws.receive_json_from(timeout=5)
    waited = time.monotonic() - started
    assert first["ts"] == [base] and first["values"][str(channel)] == [0.0]
    assert merged["ts"] == [base + 50 * i for i in range(1, 6)]
    assert merged["values"][str(channel)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert waited >= settings.LIVE_DEVICE_INTERVAL_S * 0.5  # held back, not forwarded batch by batch
    assert merged["power"]["total_kw"] == 0.005
    assert await ws.receive_nothing(timeout=0.6)
    await ws.disconnect()


async def test_a_short_hold_is_released_on_time_even_behind_a_longer_one(settings):
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    interval = settings.LIVE_DEVICE_INTERVAL_S
    main, fridge = s["main_meter"].pk, s["fridge_meter"].pk
    base = int(time.time() * 1000)

    async def publish(device: int, ts: int) -> None:
        await publish_readings(
            device_id=device, facility_id=s["facility"].pk, ts=[ts], values={s["power"][device]: [1.0]}
        )

    # The main meter sends faster than the interval: its second batch waits a full interval.
    await publish(main, base)
    await publish(main, base + 100)
    # The fridge meter is on its schedule: its second batch (a new step) waits only 1/4 interval.
    await publish(fridge, base)
    first_two = [await ws.receive_json_from(timeout=5) for _ in range(2)]
    await publish(fridge, base + int(interval * 1000))
    started = time.monotonic()
    held = await ws.receive_json_from(timeout=5)
    assert [m["device_id"] for m in first_two] == [main, fridge]
    assert (held["device_id"], held["ts"]) == (fridge, [base + int(interval * 1000)])
    assert time.monotonic() - started < interval * 0.75  # not kept until the main meter's release
    merged = await ws.receive_json_from(timeout=5)
    assert (merged["device_id"], merged["ts"]) == (main, [base + 100])
    await ws.disconnect()


async def test_a_device_on_its_2_second_schedule_is_never_held_back(settings):
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    device, channel = s["main_meter"].pk, s["power"][s["main_meter"].pk]
    step_ms = int(settings.LIVE_DEVICE_INTERVAL_S * 1000)
    base = int(time.time() * 1000)
    for i in range(3):
        # Network jitter: each batch arrives a little *less* than an interval after the last.
        sent = time.monotonic()
        await publish_readings(
            device_id=device, facility_id=s["facility"].pk, ts=[base + step_ms * i], values={channel: [1.0]}
        )
        message = await ws.receive_json_from(timeout=5)
        assert message["ts"] == [base + step_ms * i]
        assert time.monotonic() - sent < settings.LIVE_DEVICE_INTERVAL_S * 0.5
        await asyncio.sleep(settings.LIVE_DEVICE_INTERVAL_S * 0.85)
    await ws.disconnect()


async def test_a_stalled_client_slows_neither_the_publisher_nor_other_clients(settings):
    s = await site()
    layer = get_channel_layer()
    # A subscriber that never reads: Redis pushes to it regardless, and what piles up is its own.
    stalled = await layer.new_channel()
    await layer.group_add(facility_group(s["facility"].pk), stalled)
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    device, channel = s["main_meter"].pk, s["power"][s["main_meter"].pk]
    base = int(time.time() * 1000)
    burst = 250
    started = time.monotonic()
    for i in range(burst):  # group_send must neither block nor raise
        await publish_readings(
            device_id=device, facility_id=s["facility"].pk, ts=[base + 10 * i], values={channel: [float(i)]}
        )
    received: list[dict] = []
    while not await ws.receive_nothing(timeout=1.0):
        received.append(await ws.receive_json_from())
    elapsed = time.monotonic() - started
    assert received, "the live client got nothing while another subscriber was stalled"
    # Merged or skipped: never one websocket message per batch. A backlog whose sample time runs
    # ahead of the clock may go out every 1/4 interval (Coalescer.JITTER_SHARE), never faster.
    assert len(received) <= elapsed / (settings.LIVE_DEVICE_INTERVAL_S * Coalescer.JITTER_SHARE) + 1
    assert len(received) < burst / 10
    # And it is still live: the next reading after the burst arrives, the stalled subscriber notwithstanding.
    await publish_readings(
        device_id=device, facility_id=s["facility"].pk, ts=[base + 10 * burst + 5000], values={channel: [-1.0]}
    )
    latest = await ws.receive_json_from(timeout=5)
    assert latest["values"][str(channel)][-1] == -1.0
    await layer.group_discard(facility_group(s["facility"].pk), stalled)
    await ws.disconnect()


async def test_device_status_changes_reach_the_dashboard():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    snapshot = await snapshot_of(ws)
    assert snapshot["devices_online"] == 0 and snapshot["devices_total"] == 2
    now = int(time.time() * 1000)
    await publish_status(device_id=s["main_meter"].pk, facility_id=s["facility"].pk, online=True, last_seen_ms=now)
    status = await ws.receive_json_from(timeout=5)
    assert status == {
        "type": "status",
        "device_id": s["main_meter"].pk,
        "online": True,
        "last_seen": now,
        "devices_online": 1,
        "devices_total": 2,
    }
    await ws.disconnect()


async def test_a_malformed_entry_from_the_channel_layer_costs_only_itself():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    now = int(time.time() * 1000)
    main = s["main_meter"].pk
    good = batch_of(device_id=main, ts=[now], values={s["power"][main]: [2500.0]})
    await publish_batches(
        facility_id=s["facility"].pk,
        batches=[
            {"device_id": main, "channels": [1, 2], "ts": b"\x00" * 3, "values": b""},  # bytes of no array
            {"device_id": [main]},  # unhashable id
            {"nothing": "here"},
            good,
        ],
    )
    await publish_statuses(facility_id=s["facility"].pk, statuses=["not a status", {"online": True}])
    message = await ws.receive_json_from(timeout=5)
    assert (message["type"], message["values"]) == ("readings", {str(s["power"][main]): [2500.0]})
    await ws.send_json_to({"type": "ping", "id": 1})
    assert (await ws.receive_json_from(timeout=5))["type"] == "pong"  # the socket is still live
    await ws.disconnect()


async def test_a_status_message_for_several_devices_updates_each_of_them_on_the_dashboard():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    now = int(time.time() * 1000)
    main, fridge = s["main_meter"].pk, s["fridge_meter"].pk
    await publish_statuses(
        facility_id=s["facility"].pk,
        statuses=[
            device_status(device_id=main, online=True, last_seen_ms=now),
            device_status(device_id=fridge, online=True, last_seen_ms=now),
        ],
    )
    first, second = [await ws.receive_json_from(timeout=5) for _ in range(2)]
    assert [(m["device_id"], m["devices_online"]) for m in (first, second)] == [(main, 1), (fridge, 2)]
    await ws.disconnect()


async def test_a_device_socket_gets_only_that_device():
    s = await site()
    await database_sync_to_async(Device.objects.filter(pk=s["main_meter"].pk).update)(status=Device.Status.ONLINE)
    ws = await connect(f"/ws/devices/{s['main_meter'].pk}/live", cookie=s["cookie"])
    snapshot = await snapshot_of(ws)
    assert [d["name"] for d in snapshot["devices"]] == ["Main meter"]
    assert snapshot["devices"][0]["online"] is True
    now = int(time.time() * 1000)
    fridge = s["fridge_meter"].pk
    await publish_readings(device_id=fridge, facility_id=s["facility"].pk, ts=[now], values={s["power"][fridge]: [1.0]})
    main = s["main_meter"].pk
    await publish_readings(device_id=main, facility_id=s["facility"].pk, ts=[now], values={s["power"][main]: [2.0]})
    message = await ws.receive_json_from(timeout=5)
    assert message["device_id"] == main
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_one_message_with_several_devices_batches_reaches_each_page_as_its_devices_readings():
    s = await site()
    facility_ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    device_ws = await connect(f"/ws/devices/{s['fridge_meter'].pk}/live", cookie=s["cookie"])
    await snapshot_of(facility_ws)
    await snapshot_of(device_ws)
    now = int(time.time() * 1000)
    main, fridge = s["main_meter"].pk, s["fridge_meter"].pk
    await publish_batches(
        facility_id=s["facility"].pk,
        batches=[
            batch_of(device_id=main, ts=[now], values={s["power"][main]: [4000.0]}),
            batch_of(device_id=fridge, ts=[now, now + 2000], values={s["power"][fridge]: [500.0, 600.0]}),
        ],
    )
    first, second = [await facility_ws.receive_json_from(timeout=5) for _ in range(2)]
    assert (first["device_id"], first["values"]) == (main, {str(s["power"][main]): [4000.0]})
    assert (second["device_id"], second["ts"]) == (fridge, [now, now + 2000])
    assert second["power"]["total_kw"] == first["power"]["total_kw"] == 4.0  # the fridge is behind the main meter
    mine = await device_ws.receive_json_from(timeout=5)
    assert (mine["device_id"], mine["values"]) == (fridge, {str(s["power"][fridge]): [500.0, 600.0]})
    assert await device_ws.receive_nothing(timeout=0.3)
    await facility_ws.disconnect()
    await device_ws.disconnect()


async def test_a_ping_gets_a_pong_with_the_server_clock():
    s = await site()
    ws = await connect(f"/ws/facilities/{s['facility'].pk}/live", cookie=s["cookie"])
    await snapshot_of(ws)
    await ws.send_json_to({"type": "ping", "id": 3})
    pong = await ws.receive_json_from(timeout=5)
    assert pong["type"] == "pong" and pong["id"] == 3
    assert abs(pong["now"] - time.time() * 1000) < 5000
    await ws.disconnect()


async def test_the_park_sends_one_summary_per_facility_with_its_kw():
    s = await site()
    other = await database_sync_to_async(FacilityFactory)(tenant=s["facility"].tenant, name="Other")
    ws = await connect("/ws/facilities/live", cookie=s["cookie"])
    await ws.send_json_to({"type": "subscribe", "facilities": [s["facility"].pk, other.pk]})
    snapshot = await snapshot_of(ws)
    summaries = {f["id"]: f for f in snapshot["facilities"]}
    assert summaries[s["facility"].pk]["devices_total"] == 2
    assert summaries[other.pk]["devices_total"] == 0
    now = int(time.time() * 1000)
    main = s["main_meter"].pk
    await publish_readings(device_id=main, facility_id=s["facility"].pk, ts=[now], values={s["power"][main]: [3000.0]})
    await publish_status(device_id=main, facility_id=s["facility"].pk, online=True, last_seen_ms=now)
    update = await ws.receive_json_from(timeout=5)
    assert update["type"] == "facility" and update["id"] == s["facility"].pk
    assert update["power"]["total_kw"] == 3.0
    status = await ws.receive_json_from(timeout=5)
    assert status["devices_online"] == 1
    await ws.disconnect()
