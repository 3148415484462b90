"""`manage.py runweb`: Daphne (HTTP and websockets) with the device gateway on the same event loop.

The embedded in-memory channel layer lives inside one process. Without REDIS_URL, the gateway's
live readings only reach the websocket consumers if both run in the same process, so `make run`
serves them together through this command. With REDIS_URL set, run Daphne and `rungateway` as
separate processes instead (docs/operations.md).
"""

from __future__ import annotations

import daphne.server  # isort:skip  # installs Twisted's asyncio reactor before anything imports Twisted

import asyncio
from typing import Any

from channels.layers import get_channel_layer
from django.core.management.base import CommandParser
from twisted.internet import defer, reactor

from energybox.asgi import application
from gateway.management.commands.rungateway import Command as GatewayCommand
from gateway.server import Gateway, GatewayConfig


class Command(GatewayCommand):
    help = "Serve the portal (Daphne) and the device gateway in one process: the embedded mode's live path."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--web-host", default="127.0.0.1")
        parser.add_argument("--web-port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        config, ssl_context = self.prepare(options)
        loop = daphne.server.twisted_loop

        def start_gateway() -> None:
            # Runs once the reactor (and with it the asyncio loop) is running.
            loop.create_task(self._serve_with_web(options, config, ssl_context))

        server = daphne.server.Server(
            application=application,
            endpoints=[f"tcp:port={options['web_port']}:interface={options['web_host']}"],
            ready_callable=lambda: reactor.callWhenRunning(start_gateway),  # type: ignore[attr-defined]
        )
        self.stdout.write(f"Web server on http://{options['web_host']}:{options['web_port']}/ (HTTP and websockets)")
        server.run()

    async def _serve_with_web(self, options: dict[str, Any], config: GatewayConfig, ssl_context: Any) -> None:
        gateway = Gateway(ssl_context=ssl_context, config=config, channel_layer=get_channel_layer())
        host, port = await gateway.start(host=options["host"], port=options["port"])
        self.stdout.write(self.style.SUCCESS(f"Gateway listening on {host}:{port} (TLS), in the web process."))
        loop = asyncio.get_running_loop()
        # Twisted owns the signals here: on SIGTERM it runs this trigger, so the gateway still drains.
        reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
            "before",
            "shutdown",  # type: ignore[arg-type]  # Twisted's interface stub omits the event type
            lambda: defer.Deferred.fromFuture(loop.create_task(gateway.shutdown())),
        )
        await self._stats(gateway, options["stats_every"])
