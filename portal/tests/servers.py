"""Real processes for the browser test: Daphne serving the ASGI app on an ephemeral port."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from gateway.simulator import SimulatedDevice

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening on TCP address [\d.]+:(\d+)")


def server_env() -> dict[str, str]:
    """The environment of a child process that shares this test's database and channel layer."""
    env = os.environ.copy()
    db = connection.settings_dict
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["DJANGO_SETTINGS_MODULE"] = "energybox.settings.test"
    env["REDIS_URL"] = settings.REDIS_URL
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Tail:
    """Keeps reading a child's output, so its pipe never fills, and remembers it for failure messages."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append(line.rstrip())

    def text(self) -> str:
        return "\n".join(self.lines[-60:])


def _port(proc: subprocess.Popen[str], tail: Tail, pattern: re.Pattern[str], what: str) -> int:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{tail.text()}")
        port = next((m.group(1) for line in tail.lines if (m := pattern.search(line))), None)
        if port is not None:
            return int(port)
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def gateway(env: dict[str, str]) -> Iterator[tuple[int, Path]]:
    """`manage.py rungateway` on an ephemeral port; yields (port, CA file of its development certificate).

    The gateway stores what it acks in-process (no broker), so no message outlives the test.
    """
    env = {k: v for k, v in env.items() if k != "CELERY_BROKER_URL"}
    argv = [sys.executable, "manage.py", "rungateway", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = Tail(proc.stdout)
    try:
        port = _port(proc, tail, re.compile(r"Gateway listening on [\d.]+:(\d+)"), "the gateway")
        yield port, Path(env["ENERGYBOX_DATA_DIR"]) / "gateway-dev-cert.pem"
    finally:
        _stop(proc)


@contextmanager
def daphne(env: dict[str, str]) -> Iterator[str]:
    """Start Daphne on an ephemeral port; yield its base URL; stop it."""
    argv = [sys.executable, "-m", "daphne", "-v", "1", "-b", "127.0.0.1", "-p", "0", "energybox.asgi:application"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = Tail(proc.stdout)
    try:
        port = _port(proc, tail, _LISTENING, "daphne")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


class SimulatorThread:
    """Real simulated devices (gateway.simulator) streaming 2-second batches over TLS, in a thread of their own."""

    def __init__(self, devices: list[SimulatedDevice]) -> None:
        self.devices = devices
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.gather(*(d.run(duration_s=120) for d in self.devices)))

    def __enter__(self) -> SimulatorThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for device in self.devices:
            self.loop.call_soon_threadsafe(device.stop)
        self.thread.join(timeout=10)
