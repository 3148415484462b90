"""`make run`'s platform on the embedded defaults, as a user meets it: live figures move in the browser.

No Redis, no broker, SQLite: the in-memory channel layer lives in one process, so the gateway must
publish in the process that serves the websockets (`manage.py runweb`). This test runs the real
`runplatform` command with its simulator and watches the dashboard's total kW change by itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from devices.demo import DEMO_PASSWORD
from portal.tests.servers import ROOT, Tail
from portal.tests.test_browser import CHROMIUM_ARGS, chromium  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _embedded_env(data_dir: str, web_port: int, gateway_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="energybox.settings.local",
        ENERGYBOX_DATA_DIR=data_dir,
        ENERGYBOX_PORT=str(web_port),
        ENERGYBOX_GATEWAY_PORT=str(gateway_port),
        PYTHONUNBUFFERED="1",
    )
    return env


def test_make_run_streams_live_figures_to_the_dashboard_on_the_embedded_defaults(tmp_path, chromium):  # noqa: F811
    from playwright.sync_api import sync_playwright

    web_port, gateway_port = _free_port(), _free_port()
    env = _embedded_env(str(tmp_path), web_port, gateway_port)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "runplatform"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tail = Tail(proc.stdout)
    try:
        deadline = time.monotonic() + 120
        while not any("Energybox is running" in line for line in tail.lines):
            assert proc.poll() is None and time.monotonic() < deadline, f"make run did not start:\n{tail.text()}"
            time.sleep(0.2)
        while not _accepts(web_port):
            assert proc.poll() is None and time.monotonic() < deadline, f"the web server did not start:\n{tail.text()}"
            time.sleep(0.2)
        base = f"http://127.0.0.1:{web_port}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{base}/login/")
            page.fill("#id_username", "retail-admin")
            page.fill("#id_password", DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.click("text=Supermarket Berlin Mitte")
            total = '[data-figure="total_kw"]'
            page.wait_for_function(
                f"""() => /\\d/.test(document.querySelector('{total}').textContent)""", timeout=30_000
            )
            first = page.text_content(total)
            # The simulator sends every 2 s; a live page shows a new figure without a reload.
            page.wait_for_function(
                f"""(first) => document.querySelector('{total}').textContent !== first""", arg=first, timeout=20_000
            )
            assert page.text_content(total) != first
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"runplatform did not stop on SIGTERM:\n{tail.text()}") from None
