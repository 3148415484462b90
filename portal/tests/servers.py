"""Real processes for the browser test: Daphne serving the ASGI app on an ephemeral port."""

from __future__ import annotations

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


@contextmanager
def daphne(env: dict[str, str]) -> Iterator[str]:
    """Start Daphne on an ephemeral port; yield its base URL; stop it."""
    argv = [sys.executable, "-m", "daphne", "-v", "1", "-b", "127.0.0.1", "-p", "0", "energybox.asgi:application"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = Tail(proc.stdout)
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not start:\n{tail.text()}")
            port = next((m.group(1) for line in tail.lines if (m := _LISTENING.search(line))), None)
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
