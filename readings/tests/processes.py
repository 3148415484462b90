"""Real worker processes for the service-backed tests: started against the test database, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def child_database_url() -> str:
    """The URL of the database pytest-django created, so that child processes share it."""
    settings = connection.settings_dict
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


def start_worker(
    *,
    queues: str = "readings,celery",
    concurrency: int = 1,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    name: str | None = None,
):
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "energybox",
        "worker",
        "-Q",
        queues,
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "WARNING",
    ]
    if name is not None:  # several workers on one host each need their own node name (pidbox queue)
        argv += ["--hostname", name]
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "energybox.settings.test",
        "DATABASE_URL": child_database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        **(env or {}),
    }
    stderr = open(log, "ab") if log else None  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(argv, cwd=ROOT, env=child_env, start_new_session=True, stderr=stderr)  # noqa: S603


def stop(process: subprocess.Popen, *, kill: bool = False) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def worker(**kwargs) -> Iterator[subprocess.Popen]:
    process = start_worker(**kwargs)
    try:
        yield process
    finally:
        stop(process)


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def purge_queues(*names: str) -> None:
    """Empty our queues; waits up to a minute for the broker, which other fault tests may be restarting."""
    from energybox.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=30, interval_start=1, interval_step=1, interval_max=2)
        channel = conn.channel()
        for name in names:
            try:
                channel.queue_purge(name)
            except Exception:  # noqa: BLE001 - a queue that does not exist yet has nothing to purge
                channel = conn.channel()


def wait_for_workers(*, timeout: float = 60) -> None:
    """Until a worker answers a broadcast ping: it is connected and consuming."""
    from energybox.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if app.control.ping(timeout=1.0):
                return
        except OSError:
            # A broker restarted by an earlier fault test leaves pooled connections dead.
            app.pool.force_close_all()
            time.sleep(1.0)
    raise AssertionError(f"no worker answered within {timeout:.0f}s")


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (and the settings that name the broker) at another broker."""
    from django.conf import settings
    from kombu import pools as kombu_pools

    from energybox.celery import app

    previous = os.environ.get("CELERY_BROKER_URL"), settings.CELERY_BROKER_URL

    def switch(to: str | None, setting: str) -> None:
        # kombu keeps its connection pools in a registry: closing ours would leave a closed pool there.
        kombu_pools.reset()
        app._pool = None
        app.amqp._producer_pool = None
        # Celery reads the broker from this variable before its configuration.
        if to is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = to
        settings.CELERY_BROKER_URL = setting

    switch(url, url)
    try:
        yield
    finally:
        switch(*previous)
