"""Devices per gateway process at live cadence: step the fleet up until live p95 > 30 ms or a frame is lost.

Each step is one `bench/live_latency.py` run (real processes: `rungateway` with overload mode off,
Daphne, dashboards on websockets, the simulated devices in `--sim-processes` processes of their
own) at 2-s cadence, plus, from /proc, the gateway process's own CPU (user + system) and memory, and
the CPU of its store processes (the embedded store runs there, `rungateway --store-processes`).
With CELERY_BROKER_URL unset the gateway stores every batch in-process (the embedded store), so
"every frame stored" is checked in the database: the readings stored during the step must equal
the readings the gateway acked. A step passes with that, live p95 ≤ 30 ms, and every frame sent in
the window received by a dashboard.

In the same run:
- a plain binary COPY of as many readings into an indexed table (the machine's speed), and the
  step's stored-readings rate as a ratio to it (at 2-s cadence the rate is set by the fleet: the
  ratio says how much of the machine's COPY rate the step used);
- the anchor: the same frames at the same rate as MQTT 3.1.1 + JSON (ThingsBoard's telemetry
  format), QoS 1, over TLS to a Mosquitto broker this bench starts on a free port, from a process
  of its own; Mosquitto's CPU per message from /proc.

    .venv/bin/python bench/gateway_capacity.py [--steps 250,500,1000] [--seconds 30] [--clients 25]
                                               [--live-round 0.005]

Prints progress, then one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import ROOT  # bench/ is this script's folder, so it is on sys.path

BAR_P95_MS = 30.0
TICK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[gateway_capacity] {message}", flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    """The gateway's child processes (its store processes, `rungateway --store-processes`)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def store_cpu_seconds(pid: int) -> float:
    """User + system CPU of the gateway's store processes so far (0 when it stores in its own threads)."""
    total = 0.0
    for child in children(pid):
        try:
            total += cpu_seconds(child)
        except OSError:  # it exited between the listing and the read
            pass
    return total


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def postgres_backends() -> list[int]:
    """The server processes of this bench's database (the gateway's, its store processes', Daphne's)."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


def redis_server_pid() -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().split(" ", 2)[1] == "(redis-server)":
                return int(stat.parent.name)
        except OSError:
            continue
    return None


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # it exited meanwhile
            pass
    return total


def copy_rate(readings: int) -> float:
    """Readings/s of one plain binary COPY into a table with a primary key (bench/ingest.py's)."""
    import numpy as np
    from ingest import plain_copy_arrays

    rng = np.random.default_rng(3)
    channels = np.repeat(np.arange(1, 1 + readings // 1000, dtype=np.int64), 1000)
    stamps = np.tile(1_764_000_000_000 + 2000 * np.arange(1000, dtype=np.int64), len(channels) // 1000)
    values = rng.integers(0, 40_000, size=len(channels)) * 0.1
    return len(channels) / plain_copy_arrays(channels, stamps, values)


def step(
    n: int, *, clients: int, seconds: float, sim_processes: int, loop: str, breakdown: bool, live_round: float | None
) -> dict[str, Any]:
    import live_latency as ll
    from ingest import stored

    specs, by_facility, session_key = ll.provision(devices=n, facilities=clients)
    env = dict(os.environ)
    argv = ll.gateway_argv(loop=loop) + ([] if live_round is None else ["--live-round", str(live_round)])
    gateway = ll.Child("gateway", argv, env)
    web = ll.Child(
        "daphne",
        [ll.sys.executable, "-m", "daphne", "-v", "1", "-b", "127.0.0.1", "-p", "0", "energybox.asgi:application"],
        env,
    )
    before = stored()
    try:
        gateway_port = int(gateway.wait_for(r"listening on [\d.]+:(\d+)").group(1))
        web_port = int(web.wait_for(r"Listening on TCP address [\d.]+:(\d+)").group(1))
        cafile = str(Path(env["ENERGYBOX_DATA_DIR"]) / "gateway-dev-cert.pem")
        args = SimpleNamespace(seconds=seconds, sim_processes=sim_processes, breakdown=breakdown)
        # (wall clock, gateway CPU s, RSS MB, store processes' CPU s), every 0.5 s
        samples: list[tuple[float, float, float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                try:
                    pid = gateway.proc.pid
                    samples.append((time.time(), cpu_seconds(pid), rss_mb(pid), store_cpu_seconds(pid)))
                except OSError:  # the gateway exited (its failure is reported by the step)
                    return

        # The rest of the machine in the measured window: what the gateway competes with for the cores.
        others: dict[str, float] = {}

        def machine(at: str) -> None:
            pids = {
                "daphne": [web.proc.pid],
                "bench_clients": [os.getpid()],  # the dashboards' websockets, the tap and the baseline
                "postgres_backends": postgres_backends(),
                "redis_server_all_users": [pid] if (pid := redis_server_pid()) else [],
            }
            for name, group in pids.items():
                others[f"{name}_{at}"] = cpu_of(group)
            others[f"wall_{at}"] = time.time()

        def window_timer() -> None:
            if not done.wait(15.0):  # ll.measure's warm-up
                machine("start")
                if not done.wait(args.seconds):
                    machine("end")

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Thread(target=window_timer, daemon=True)
        timer.start()
        result = asyncio.run(ll.measure(args, 15.0, specs, by_facility, session_key, gateway_port, web_port, cafile))
        done.set()
        sampler.join()
        timer.join()
    finally:
        gateway.stop()
        web.stop()
    start, end = result.pop("window")
    inside = [s for s in samples if start <= s[0] <= end]
    wall = inside[-1][0] - inside[0][0]
    cpu = inside[-1][1] - inside[0][1]
    store_cpu = inside[-1][3] - inside[0][3]
    frames_in_window = result["frames"] + result["frames_not_received"]
    stopped = next((line for line in reversed(gateway.lines) if "gateway: stopped" in line), "")
    acked = re.search(r"'readings_acked': (\d+)", stopped)
    frames = re.search(r"'frames': (\d+)", stopped)
    readings_acked = int(acked.group(1)) if acked else -1
    stored_now = stored() - before
    result.update(
        {
            # In the measured window only: handshakes and start-up are not counted.
            "gateway_cpu_percent": round(100 * cpu / wall, 1),
            "gateway_cpu_us_per_frame": round(1e6 * cpu / frames_in_window * wall / args.seconds, 1),
            # The embedded store's processes beside it (rungateway --store-processes; 0 with threads,
            # whose CPU is then in the figures above): the same work, off the event loop's GIL.
            "store_processes_cpu_percent": round(100 * store_cpu / wall, 1),
            "store_processes_cpu_us_per_frame": round(1e6 * store_cpu / frames_in_window * wall / args.seconds, 1),
            "gateway_rss_mb": round(max(s[2] for s in inside), 1),
            # % of one core each, in the window; the machine has os.cpu_count() of them. Redis serves
            # every user of the machine, so its figure is an upper bound of this bench's share.
            "machine_cpu_percent": machine_breakdown(others, gateway=100 * cpu / wall, store=100 * store_cpu / wall),
            "gateway_frames": int(frames.group(1)) if frames else None,
            "readings_acked": readings_acked,
            "readings_stored": stored_now,
            "every_frame_stored": stored_now == readings_acked,
            # At 2-s cadence the fleet sets this rate: a frame of every channel per device every 2 s.
            "stored_readings_per_s": round(frames_in_window * len(specs[0]["channels"]) / args.seconds, 1),
        }
    )
    shares = result["machine_cpu_percent"]
    if shares:
        shares["simulators"] = round(sum(result["simulator_cpu_percent"]), 1)
        shares["sum"] = round(sum(v for k, v in shares.items() if k != "cores"), 1)
    return result


def machine_breakdown(others: dict[str, float], *, gateway: float, store: float) -> dict[str, Any]:
    if "wall_end" not in others:
        return {}
    wall = others["wall_end"] - others["wall_start"]
    shares = {"gateway": round(gateway, 1), "store_processes": round(store, 1)}
    for name in ("daphne", "bench_clients", "postgres_backends", "redis_server_all_users"):
        shares[name] = round(100 * (others[f"{name}_end"] - others[f"{name}_start"]) / wall, 1)
    shares["cores"] = os.cpu_count() or 0
    return shares


# --- The anchor: Mosquitto over TLS ----------------------------------------------------------------


def mqtt_fleet(port: int, cafile: str, payloads: list[bytes], devices: int, connections: int, seconds: float) -> None:
    """Child process: `devices` publishers at 2-s cadence, over `connections` TLS connections, QoS 1."""
    import paho.mqtt.client as mqtt

    clients = []
    for k in range(connections):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"BENCH-{k}", protocol=mqtt.MQTTv311)
        client.tls_set(ca_certs=cafile)
        client.connect("localhost", port, keepalive=60)
        client.loop_start()
        clients.append(client)
    per_tick = devices  # every device once every 2 s, spread over the 2 s
    started = time.monotonic()
    sent = 0
    pending = []
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed / 2.0 * per_tick)
        while sent < due:
            client = clients[sent % connections]
            pending.append(
                client.publish(f"v1/devices/{sent % devices}/telemetry", payloads[sent % len(payloads)], qos=1)
            )
            sent += 1
        time.sleep(0.002)
    for info in pending[-1000:]:
        info.wait_for_publish(timeout=10)
    for client in clients:
        client.disconnect()
        client.loop_stop()


def mosquitto_anchor(devices: int, seconds: float, connections: int) -> dict[str, Any]:
    from mobile import start_mosquitto, thingsboard_payloads

    from devices.demo import METER_12
    from gateway.simulator import ChannelSpec, DeviceSpec
    from gateway.tls import dev_certificate

    folder = Path(tempfile.mkdtemp(prefix="bench-capacity-mqtt-"))
    cert, key = dev_certificate(folder)
    spec = DeviceSpec(
        serial="ANCHOR",
        private_key=b"\0" * 32,
        channels=tuple(ChannelSpec(c["quantity"], float(c.get("scale", 0.1)), c.get("phase", "")) for c in METER_12),
        load_kind="mains",
    )
    payloads = thingsboard_payloads(spec, 500)
    mosquitto, port = start_mosquitto(folder, cert, key)
    try:
        connections = min(connections, devices)
        publisher = multiprocessing.get_context("spawn").Process(
            target=mqtt_fleet, args=(port, str(cert), payloads, devices, connections, seconds)
        )
        cpu0, wall0 = cpu_seconds(mosquitto.pid), time.monotonic()
        publisher.start()
        publisher.join(seconds + 120)
        cpu, wall = cpu_seconds(mosquitto.pid) - cpu0, time.monotonic() - wall0
    finally:
        mosquitto.terminate()
        mosquitto.wait(5)
    messages = int(devices * seconds / 2)
    return {
        "devices": devices,
        "connections": connections,
        "messages": messages,
        "payload_bytes": round(sum(map(len, payloads)) / len(payloads)),
        "mosquitto_cpu_percent": round(100 * cpu / wall, 1),
        "mosquitto_cpu_us_per_message": round(1e6 * cpu / messages, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", default="250,500,1000", help="device counts, comma-separated, ascending (every step runs)"
    )
    parser.add_argument("--clients", type=int, default=25, help="dashboards, one facility each")
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds per step, after a 15-s warm-up")
    parser.add_argument("--sim-processes", type=int, default=2)
    parser.add_argument("--loop", default="auto", help="the gateway's event loop (rungateway --loop)")
    parser.add_argument(
        "--breakdown", action="store_true", help="also split device → channel layer from layer → websocket"
    )
    parser.add_argument("--anchor-connections", type=int, default=100, help="MQTT connections of the anchor")
    parser.add_argument(
        "--live-round", type=float, default=None, help="the gateway's live round interval, s (rungateway --live-round)"
    )
    args = parser.parse_args()
    os.environ.pop("CELERY_BROKER_URL", None)  # the embedded store: every batch stored by the gateway itself
    os.chdir(ROOT)
    import live_latency as ll

    env = ll.configure()
    log(f"database {env['DATABASE_URL']}, redis {env['REDIS_URL']}, gateway loop {args.loop}, embedded store")
    copy = copy_rate(2_000_000)
    log(f"plain COPY: {copy:,.0f} readings/s")
    steps = []
    carried = 0
    for n in (int(x) for x in args.steps.split(",")):
        log(f"step: {n} devices")
        result = step(
            n,
            clients=args.clients,
            seconds=args.seconds,
            sim_processes=args.sim_processes,
            loop=args.loop,
            breakdown=args.breakdown,
            live_round=args.live_round,
        )
        result["ingest_ratio_to_copy"] = round(result["stored_readings_per_s"] / copy, 4)
        log(f"step {n}: {json.dumps(result)}")
        anchor = mosquitto_anchor(n, min(args.seconds, 30), args.anchor_connections)
        log(f"anchor {n}: {json.dumps(anchor)}")
        result["mosquitto_anchor"] = anchor
        steps.append(result)
        result["passed"] = (
            result["p95_ms"] is not None
            and result["p95_ms"] <= BAR_P95_MS
            and result["every_frame_stored"]
            and result["frames_not_received"] == 0
        )
        if result["passed"] and carried == max((s["devices"] for s in steps[:-1]), default=0):
            carried = n  # the largest step that passed with every step below it passing
    print(
        json.dumps(
            {
                "devices_carried": carried,
                "bar_p95_ms": BAR_P95_MS,
                "bar_devices": 5000,
                "heading_devices": 20000,
                "copy_readings_per_s": round(copy),
                "gateway_loop": args.loop,
                "live_round_s": args.live_round,  # None: rungateway's default
                "steps": steps,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
