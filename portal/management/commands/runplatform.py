"""`make run`: start every process of the platform on the embedded defaults and supervise them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from billing.demo import seed_billing_demo
from devices.demo import DEMO_TENANTS, demo_keys_path, seed_demo
from gateway.backfill import demo_history_backfill


def platform_processes(*, host: str, port: int) -> list[tuple[str, list[str]]]:
    """The processes `make run` starts. Later components add their line here."""
    python = sys.executable
    manage = str(settings.BASE_DIR / "manage.py")
    gateway_port = str(settings.GATEWAY_PORT)
    gateway_address = ["--host", settings.GATEWAY_HOST, "--port", gateway_port]
    if settings.REDIS_URL:
        processes = [
            ("web", [python, "-m", "daphne", "-b", host, "-p", str(port), "energybox.asgi:application"]),
            ("gateway", [python, manage, "rungateway", *gateway_address]),
        ]
    else:
        # The in-memory channel layer is per process: the gateway must publish where the websockets are.
        processes = [
            ("web+gateway", [python, manage, "runweb", "--web-host", host, "--web-port", str(port), *gateway_address])
        ]
    processes.append(("worker", [python, manage, "runtaskworker", "--loglevel", "WARNING"]))
    if demo_keys_path().exists():
        # The demo devices, as real ones run: batching (15 samples of 2 s a frame), and live at 2 s
        # only while someone watches them (live on demand: opening a dashboard switches its devices
        # within a second or two, and they flush what they buffered). Their private keys sit in
        # DATA_DIR/demo-device-keys.json: a demo convenience, real devices keep theirs to themselves.
        simulate = [python, manage, "simulate", "--port", gateway_port, "--progress-every", "60"]
        processes.append(("simulator", simulate))
    return processes


class Command(BaseCommand):
    help = "Seed the demo and run the whole platform (web, and the components that exist) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("ENERGYBOX_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ENERGYBOX_PORT", "8000")))
        parser.add_argument("--no-seed", action="store_true", help="Do not seed the demo data.")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        logins = [] if options["no_seed"] else seed_demo()
        if not options["no_seed"]:
            seed_billing_demo()
            self.stdout.write("Backfilling the demo's history (first start only) ...")
            result = demo_history_backfill(tenant_slugs=DEMO_TENANTS, progress=self.stdout.write)
            if result.devices:
                self.stdout.write(
                    f"  {result.readings:,} readings for {result.devices} devices in {result.seconds:.1f} s"
                )
            else:
                self.stdout.write("  already there")
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        for name, argv in platform_processes(host=host, port=port):
            self.stdout.write(f"starting {name}: {' '.join(argv[1:])}")
            children.append((name, subprocess.Popen(argv, env=os.environ.copy())))  # noqa: S603

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Energybox is running: portal http://{host}:{port}/"))
        self.stdout.write(f"  admin           http://{host}:{port}/admin/")
        self.stdout.write(f"  health          http://{host}:{port}/healthz")
        self.stdout.write(
            f"  device gateway  tls://{settings.GATEWAY_HOST}:{settings.GATEWAY_PORT} (simulated demo devices)"
        )
        self.stdout.write(f"  API docs        http://{host}:{port}/api/docs/   (OAuth 2.0 / OIDC at /o/)")
        for login in logins:
            self.stdout.write(f"  login {login.username:<14} password {login.password}   ({login.tenant})")
        self.stdout.write(f"  data folder     {settings.DATA_DIR}")
        self.stdout.write("Press Ctrl-C to stop.")

        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, child in children:
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with code {child.returncode}; stopping the platform.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for _, child in children:
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + 15
            for _, child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
