"""Real `rungateway` processes behind a real HAProxy, for the cluster tests and `bench/scale.py`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.haproxy import haproxy_config
from readings.tests.processes import ROOT, child_database_url

HAPROXY = "/usr/sbin/haproxy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, *, timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args[:4]} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on port {port} within {timeout:.0f}s")


def start_gateway(
    *, port: int, cert: Path, key: Path, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`manage.py rungateway` on the test database (its own session, so SIGKILL reaches only it)."""
    argv = [sys.executable, "manage.py", "rungateway", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--cert", str(cert), "--key", str(key), "--stats-every", "5"]
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "energybox.settings.test",
        "DATABASE_URL": child_database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        **(env or {}),
    }
    stderr = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(  # noqa: S603
        argv, cwd=ROOT, env=child_env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr
    )
    wait_listening(port, process=process)
    return process


def start_haproxy(*, folder: Path, frontend_port: int, backend_ports: Sequence[int]) -> subprocess.Popen:
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(frontend_port=frontend_port, backends=[("127.0.0.1", p) for p in backend_ports]))
    log = open(folder / "haproxy.log", "ab")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(  # noqa: S603
        [HAPROXY, "-db", "-f", str(config)], start_new_session=True, stdout=log, stderr=log
    )
    wait_listening(frontend_port, process=process)
    return process
