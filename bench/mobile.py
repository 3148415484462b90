"""Mobile data per device-month: what a 12-channel meter on a SIM card really sends and receives.

Every reading is stored at 2 s in every case. Bytes are counted at the socket: a counting TCP proxy
sits between the device and the server and parses the TLS records going each way (header, payload,
AEAD tag: the real record sizes of the real TLS session). On top comes an estimate of TCP/IP per
segment (IPv4 20 + TCP 20 + timestamps option 12 = 52 bytes): every record is its own segment (one
TLS record per frame, frames seconds apart), the answer (our ACK, MQTT's PUBACK) carries the TCP ack
of the request, and the device's TCP acks the answer with a pure ACK segment, since it has nothing
to send within the delayed-ACK time.

Cases, all in this run:
  (a) batched only: 15 samples (30 s) per frame, the real gateway and simulator;
  (b) always live: one sample per frame (the gateway switched the device by `gateway.livemode`);
  (c) live on demand: 22 h/day as (a) and 2 h/day as (b), plus the switches (CONFIG + ACK each way);
  (d) MQTT 3.1.1 + JSON in ThingsBoard's device telemetry format, `{"ts":…,"values":{…}}`, one
      message per 2-s sample, QoS 1, over TLS to a Mosquitto this benchmark starts on a free port.

Each case runs twice (n and 2n frames, each on a fresh connection); the difference gives the cost
per frame, the rest is the connection (TCP + TLS handshake, HELLO/AUTH or CONNECT), counted once a
day (a mobile link that reconnects daily). Needs PostgreSQL for the device identity
(BENCH_DATABASE_URL, default energybox_bench_mobile) and /usr/sbin/mosquitto.

    .venv/bin/python bench/mobile.py [--frames 200]

Last line: one JSON object with MB per device-month for (a)-(d) and the bars.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import math
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import setup  # bench/ is this script's folder, so it is on sys.path

# The devices here send a month's frames as fast as they can (realtime=False), so their sample times run
# ahead of the clock; the gateway's future-readings guard (READINGS_MAX_FUTURE_S, 300 s) would refuse them
# after 150 live frames. The bytes on the wire do not depend on it: the guard is opened for this process.
os.environ.setdefault("READINGS_MAX_FUTURE_S", str(30 * 86_400))

SECONDS_PER_MONTH = 30 * 86_400
INTERVAL_S = 2
BATCH = 15  # samples per batched frame (--batch)
CHANNELS = 12
TCPIP_PER_SEGMENT = 52
TLS13_RECORD_OVERHEAD = 22  # 5 header + 1 inner content type + 16 AEAD tag
MSS = 1448
VIEWING_H_PER_DAY = 2
MB = 1_000_000


def log(message: str) -> None:
    print(f"[mobile] {message}", flush=True)


# --- the counting proxy ---------------------------------------------------------------------------


@dataclass
class Direction:
    records: list[int] = field(default_factory=list)  # whole TLS record sizes (header included)
    bytes: int = 0
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        self._buffer += data
        while len(self._buffer) >= 5:
            size = 5 + int.from_bytes(self._buffer[3:5], "big")
            if len(self._buffer) < size:
                break
            self.records.append(size)
            del self._buffer[:size]

    def segments(self) -> int:
        return sum(math.ceil(size / MSS) for size in self.records)


@dataclass
class Tally:
    up: Direction = field(default_factory=Direction)  # device -> server
    down: Direction = field(default_factory=Direction)

    def total(self) -> float:
        # Every record its own data segment; the device sends a pure ACK for each record it receives,
        # and the server one for each device record it does not answer with a record of its own
        # (an ACK_SET covers several live frames).
        unanswered = max(0, len(self.up.records) - len(self.down.records))
        segments = self.up.segments() + self.down.segments() + len(self.down.records) + unanswered
        return self.up.bytes + self.down.bytes + segments * TCPIP_PER_SEGMENT


class CountingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.tallies: list[Tally] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tally = Tally()
        self.tallies.append(tally)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: Direction) -> None:
            try:
                while data := await src.read(65536):
                    direction.feed(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, tally.up), pump(up_reader, writer, tally.down))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


def per_frame_and_connection(short: Tally, long: Tally, frames: int) -> tuple[float, float]:
    per_frame = (long.total() - short.total()) / frames
    return per_frame, short.total() - per_frame * frames


# --- (a), (b): the real gateway and the simulated device -------------------------------------------


async def gateway_case(
    gateway: Any,
    proxy: CountingProxy,
    spec: Any,
    client_ctx: ssl.SSLContext,
    *,
    live: bool,
    frames: int,
    device_id: int,
    batch: int = BATCH,
) -> Tally:
    from gateway.simulator import SimulatedDevice

    device = SimulatedDevice(
        spec, host="127.0.0.1", port=proxy.port, ssl_context=client_ctx, batch=batch, realtime=False,
        max_batches=frames, seed=1, record=False, reconnect_delay_s=0.1,
    )  # fmt: skip
    if live:
        # The real switch: a viewer's lease, as the control bus delivers it, before the device connects.
        gateway.livemode.on_command(device_id, {"viewer": "bench", "lease_s": 300})
    await device.run(duration_s=120)
    gateway.livemode.on_command(device_id, {"viewer": "bench", "lease_s": 0})
    await asyncio.sleep(0.2)
    tally = proxy.tallies[-1]
    if device.stats.batches_acked != frames or device.stats.reconnects:
        raise SystemExit(f"bench: the device got {device.stats.batches_acked} of {frames} acks")
    if live and device.stats.readings_sent != frames * CHANNELS:
        raise SystemExit("bench: the device did not go live")
    return tally


# --- (d): MQTT + JSON to Mosquitto over TLS --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mosquitto(folder: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\npersistence false\n"
        # Run as root, mosquitto drops to the user `mosquitto`, which cannot read our 0600 key.
        f"user {getpass.getuser()}\n"
    )
    process = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.kill()
    raise SystemExit("bench: mosquitto did not start")


def thingsboard_payloads(spec: Any, frames: int) -> list[bytes]:
    import numpy as np

    from gateway.simulator import Meter

    meter = Meter(spec, np.random.default_rng(1))
    keys = [f"{c.quantity}_{c.phase}" if c.phase else c.quantity for c in spec.channels]
    scales = np.array([c.scale for c in spec.channels])
    decimals = [max(0, -int(math.floor(math.log10(s)))) for s in scales]
    start = 1_764_170_000_000
    ts = start + 2000 * np.arange(frames, dtype=np.int64)
    values = meter.sample(ts, 2000) * scales[:, None]
    return [
        json.dumps(
            {"ts": int(ts[k]), "values": {key: round(float(values[c, k]), decimals[c]) for c, key in enumerate(keys)}},
            separators=(",", ":"),
        ).encode()
        for k in range(frames)
    ]


def mqtt_publish(port: int, cafile: Path, payloads: list[bytes]) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="SN-BENCH-MQTT", protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(cafile))
    client.username_pw_set("device-access-token")  # ThingsBoard's device credential: the token as user name
    client.connect("localhost", port, keepalive=60)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish("v1/devices/me/telemetry", payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


# --- main -------------------------------------------------------------------------------------------


def month_mb(*, per_frame: float, frames_per_month: float, connection: float) -> float:
    return (per_frame * frames_per_month + connection * 30) / MB


async def run(frames: int, batch: int = BATCH) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from devices.demo import METER_12
    from devices.models import Device
    from devices.services import device_provision, device_type_create, facility_create
    from gateway import protocol as p
    from gateway.server import Gateway, GatewayConfig
    from gateway.tests.helpers import spec_for
    from gateway.tls import client_context, dev_certificate, server_context

    def provision() -> tuple[Any, Any]:
        from accounts.models import Tenant

        Device.objects.filter(serial="SN-BENCH-MOBILE").delete()
        tenant, _ = Tenant.objects.get_or_create(slug="bench-mobile", defaults={"name": "Bench mobile"})
        facility = facility_create(tenant=tenant, name=f"Mobile {time.time_ns()}", timezone="Europe/Berlin")
        device_type = device_type_create(
            model_name=f"M12 {time.time_ns()}", channels=METER_12, firmware_line="eb-meter"
        )
        issued = device_provision(tenant=tenant, serial="SN-BENCH-MOBILE", device_type=device_type, facility=facility)
        return issued, spec_for(issued)

    issued, spec = await sync_to_async(provision)()
    folder = Path(tempfile.mkdtemp(prefix="bench-mobile-"))
    cert, key = dev_certificate(folder)
    client_ctx = client_context(cafile=cert)
    gateway = Gateway(
        ssl_context=server_context(cert=cert, key=key),
        config=GatewayConfig(rate_per_s=10_000, rate_burst=10_000, linger_s=0.0),
        enqueue=lambda batches: None,  # the bytes on the wire do not depend on the store
    )
    _, gateway_port = await gateway.start(host="127.0.0.1", port=0)
    proxy = CountingProxy(gateway_port)
    await proxy.start()
    results: dict[str, tuple[float, float]] = {}
    records: dict[str, dict[str, float]] = {}
    try:
        for name, live in (("a", False), ("b", True)):
            short = await gateway_case(
                gateway, proxy, spec, client_ctx, live=live, frames=frames, device_id=issued.device.pk, batch=batch
            )
            long = await gateway_case(
                gateway, proxy, spec, client_ctx, live=live, frames=2 * frames, device_id=issued.device.pk, batch=batch
            )
            results[name] = per_frame_and_connection(short, long, frames)
            records[name] = {
                "up_records_per_frame": (len(long.up.records) - len(short.up.records)) / frames,
                "up_record_bytes": (long.up.bytes - short.up.bytes) / frames,
                "down_record_bytes": (long.down.bytes - short.down.bytes) / frames,
            }
            log(
                f"({name}) {results[name][0]:.1f} B per frame, {results[name][1]:.0f} B per connection, {records[name]}"
            )
    finally:
        await proxy.close()
        await gateway.shutdown()

    mosquitto, mqtt_port = start_mosquitto(folder, cert, key)
    try:
        mqtt_proxy = CountingProxy(mqtt_port)
        await mqtt_proxy.start()
        payloads = thingsboard_payloads(spec, 2 * frames)
        await asyncio.to_thread(mqtt_publish, mqtt_proxy.port, cert, payloads[:frames])
        await asyncio.sleep(0.3)
        await asyncio.to_thread(mqtt_publish, mqtt_proxy.port, cert, payloads)
        await asyncio.sleep(0.3)
        await mqtt_proxy.close()
        results["d"] = per_frame_and_connection(mqtt_proxy.tallies[0], mqtt_proxy.tallies[1], frames)
        log(f"(d) {results['d'][0]:.1f} B per message, {results['d'][1]:.0f} B per connection; "
            f"payload {sum(map(len, payloads)) / len(payloads):.0f} B of JSON")  # fmt: skip
    finally:
        mosquitto.terminate()
        mosquitto.wait(5)

    samples_per_month = SECONDS_PER_MONTH / INTERVAL_S
    live_share = VIEWING_H_PER_DAY / 24
    a = month_mb(per_frame=results["a"][0], frames_per_month=samples_per_month / batch, connection=results["a"][1])
    b = month_mb(per_frame=results["b"][0], frames_per_month=samples_per_month, connection=results["b"][1])
    # Two switches a day, each a CONFIG down and its ACK up, in their own records and segments.
    config_frame = len(p.encode_frame(p.FrameType.CONFIG, 1, p.Config({p.CONFIG_MODE: p.MODE_BATCH}).encode()))
    ack_frame = len(p.encode_frame(p.FrameType.ACK, 1, p.Ack(1).encode()))
    switch = 2 * (config_frame + ack_frame + 2 * TLS13_RECORD_OVERHEAD + 3 * TCPIP_PER_SEGMENT)
    c = (
        month_mb(
            per_frame=results["a"][0],
            frames_per_month=samples_per_month * (1 - live_share) / batch,
            connection=results["a"][1],
        )
        + results["b"][0] * samples_per_month * live_share / MB
        + switch * 30 / MB
    )
    d = month_mb(per_frame=results["d"][0], frames_per_month=samples_per_month, connection=results["d"][1])
    return {
        "mb_per_device_month_a_batched": round(a, 2),
        "mb_per_device_month_b_live": round(b, 2),
        "mb_per_device_month_c_on_demand": round(c, 2),
        "mb_per_device_month_d_mqtt_json": round(d, 2),
        "c_over_d": round(c / d, 4),
        "bar_c_over_d": 0.1,
        "bar_c_mb": 15,
        "bytes_per_frame": {k: round(v[0], 1) for k, v in results.items()},
        "bytes_per_connection": {k: round(v[1]) for k, v in results.items()},
        "channels": CHANNELS,
        "batch": batch,
        "viewing_h_per_day": VIEWING_H_PER_DAY,
        "tcpip_bytes_per_segment": TCPIP_PER_SEGMENT,
        "tls": ssl.OPENSSL_VERSION,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--batch", type=int, default=BATCH, help="samples per batched frame, 1..255")
    args = parser.parse_args()
    os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"bench-mobile-{os.getpid()}")
    setup(default_name="energybox_bench_mobile")
    result = asyncio.run(run(args.frames, args.batch))
    print(json.dumps(result))


if __name__ == "__main__":
    threading.current_thread().name = "bench-mobile"
    main()
