"""Authenticated idle TLS devices held by ONE gateway process, and what each costs in memory.

The gateway runs as `manage.py rungateway` (embedded defaults, temp SQLite with the devices
provisioned); the devices run in separate client processes, each completing the TLS handshake and
the Ed25519 challenge-response, then staying idle. Baseline: the gateway's RSS before any device.
Last line: {"connections": …, "rss_kb_per_connection": …, …}
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as _setup  # noqa: E402

TARGET = int(os.environ.get("BENCH_CONNECTIONS", "5000"))
CLIENT_PROCESSES = 4


def client(port: int, cafile: str, devices: list[tuple[str, bytes]], ready: mp.Queue, stop: mp.Event) -> None:
    _setup.raise_nofile()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway import protocol as p
    from gateway.tls import client_context

    context = client_context(cafile=Path(cafile))

    async def one(serial: str, seed: bytes, gate: asyncio.Semaphore, held: list) -> bool:
        async with gate:
            for _attempt in range(5):
                try:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", port, ssl=context, server_hostname="localhost"
                    )
                    parser = p.FrameParser(max_payload=0xFFFF)
                    writer.write(p.encode_frame(p.FrameType.HELLO, 1, p.Hello(serial).encode()))
                    frames: list[p.Frame] = []
                    while not frames:
                        frames += parser.feed(await reader.read(4096))
                    challenge = p.Challenge.decode(frames.pop(0).payload)
                    key = Ed25519PrivateKey.from_private_bytes(seed)
                    message = p.auth_message(nonce=challenge.nonce, serial=serial, version=challenge.version)
                    writer.write(p.encode_frame(p.FrameType.AUTH, 2, key.sign(message)))
                    while not frames:
                        data = await reader.read(4096)
                        if not data:
                            raise ConnectionError("closed")
                        frames += parser.feed(data)
                    if frames[0].type == p.FrameType.WELCOME:
                        held.append((reader, writer))
                        return True
                    writer.close()
                except (OSError, ConnectionError, asyncio.IncompleteReadError):
                    await asyncio.sleep(0.5)
            return False

    async def main() -> None:
        gate = asyncio.Semaphore(50)
        held: list = []
        results = await asyncio.gather(*(one(serial, seed, gate, held) for serial, seed in devices))
        ready.put(sum(results))
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing event, not an asyncio one
            await asyncio.sleep(0.2)
        for _, writer in held:
            writer.close()

    asyncio.run(main())


def main() -> None:
    import faulthandler

    # A benchmark must stop by itself: if anything hangs, dump every thread's stack and exit.
    faulthandler.dump_traceback_later(600, exit=True)
    data = _setup.django_embedded("connections")
    print(f"provisioning {TARGET} devices ...", flush=True)
    devices = _setup.provision_meters(TARGET)
    env = {**os.environ, "DATABASE_CONN_MAX_AGE": "600"}
    gateway = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            str(_setup.ROOT / "manage.py"),
            "rungateway",
            "--port=0",
            "--handshake-timeout=120",
            "--idle-timeout=900",
            "--stats-every=3600",
        ],  # fmt: skip
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    processes: list[mp.Process] = []
    try:
        port = None
        while port is None:
            line = gateway.stdout.readline()
            if not line:
                raise SystemExit("the gateway did not start")
            match = re.search(r"Gateway listening on [\d.]+:(\d+)", line)
            port = int(match.group(1)) if match else None
        time.sleep(1.0)
        idle_rss = _setup.rss_kb(gateway.pid)
        cafile = str(data / "gateway-dev-cert.pem")
        ready: mp.Queue = mp.Queue()
        stop = mp.Event()
        share = (len(devices) + CLIENT_PROCESSES - 1) // CLIENT_PROCESSES
        started = time.monotonic()
        for i in range(CLIENT_PROCESSES):
            chunk = devices[i * share : (i + 1) * share]
            process = mp.Process(target=client, args=(port, cafile, chunk, ready, stop), daemon=True)
            process.start()
            processes.append(process)
        connected = sum(ready.get(timeout=600) for _ in processes)
        connect_s = time.monotonic() - started
        time.sleep(2.0)
        held_rss = _setup.rss_kb(gateway.pid)
        alive = gateway.poll() is None
        stop.set()
        result = {
            "connections": connected,
            "rss_kb_per_connection": round((held_rss - idle_rss) / max(connected, 1), 1),
            "bar_connections": 5000,
            "gateway_rss_kb_idle": idle_rss,
            "gateway_rss_kb_with_connections": held_rss,
            "handshakes_per_s": round(connected / connect_s, 1),
            "gateway_alive": alive,
        }
        print(json.dumps(result))
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGTERM)
            try:
                gateway.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(gateway.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
