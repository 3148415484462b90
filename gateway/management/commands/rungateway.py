"""`manage.py rungateway`: the device gateway, an asyncio TLS server (see docs/protocol.md)."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.cluster import cluster_from_settings
from gateway.server import Gateway, GatewayConfig, install_signal_handlers
from gateway.tls import dev_certificate, server_context

logger = logging.getLogger("gateway")


def raise_open_files_limit() -> int:
    """Every device holds a socket: lift the soft file limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(name: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The event loop `--loop` asks for: uvloop (libuv) when installed and asked for or "auto", else asyncio's."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise CommandError("--loop uvloop: the uvloop package is not installed.") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", None


def store_processes(asked: int | None) -> int:
    """Store processes: as asked, else one in the embedded mode (the store would share the loop's GIL)."""
    if asked is not None:
        return max(0, asked)
    return 0 if settings.CELERY_BROKER_URL else 1


# Generation-1 passes before a full one (Python's own default is 10). Once the start-up objects are
# frozen, a full pass walks what the connections made since, and a burst of reconnects (a firmware
# wave) set one off every few seconds, each pausing the loop for 100 ms and more; docs/gateway.md has
# the bench/rollout.py figures. Cyclic garbage waits longer to be freed.
GC_FULL_EVERY = 100


def collector_settle(full_every: int) -> None:
    """Freeze what is loaded by now (it lives as long as the process) and space out the full passes."""
    gc.freeze()
    first, second, _ = gc.get_threshold()
    gc.set_threshold(first, second, full_every)


class GcPauses:
    """The garbage collector's passes and the time they stopped the gateway, per generation (stats line)."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.ms = [0.0, 0.0, 0.0]
        self.longest_ms = 0.0
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took_ms = (time.perf_counter() - self._started) * 1000
        self.passes[info["generation"]] += 1
        self.ms[info["generation"]] += took_ms
        self.longest_ms = max(self.longest_ms, took_ms)

    def __str__(self) -> str:
        rounded = [round(ms) for ms in self.ms]
        return f"gc passes {self.passes} took {rounded} ms (longest {self.longest_ms:.0f} ms)"


class Command(BaseCommand):
    help = "Run the device gateway: TLS 1.2+, Ed25519 device authentication, readings ingest, firmware transfers."

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = GatewayConfig()
        parser.add_argument("--host", default=settings.GATEWAY_HOST)
        parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT)
        parser.add_argument("--cert", default=settings.GATEWAY_TLS_CERT, help="TLS certificate chain (PEM).")
        parser.add_argument("--key", default=settings.GATEWAY_TLS_KEY, help="TLS private key (PEM).")
        parser.add_argument("--handshake-timeout", type=float, default=defaults.handshake_timeout_s, help="seconds")
        parser.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout_s, help="seconds")
        parser.add_argument("--frame-timeout", type=float, default=defaults.frame_timeout_s, help="seconds")
        parser.add_argument("--max-payload", type=int, default=defaults.max_payload, help="bytes per frame")
        parser.add_argument("--rate", type=int, default=defaults.rate_per_s, help="frames/s per device")
        parser.add_argument("--burst", type=int, default=defaults.rate_burst, help="frames per device burst")
        parser.add_argument("--max-unacked", type=int, default=defaults.max_unacked, help="batches in flight")
        parser.add_argument(
            "--live-hold-over",
            type=float,
            default=settings.GATEWAY_LIVE_HOLD_OVER_S,
            help="seconds a device stays live after its last viewer left",
        )
        parser.add_argument(
            "--live-round",
            type=float,
            default=defaults.live_round_s,
            help="seconds between the starts of two live rounds to the channel layer (default 0.005): under load "
            "a frame waits at most this long for its round, and a round carries every frame that came meanwhile; "
            "0: a round as soon as the previous one is done",
        )
        parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout_s, help="seconds")
        parser.add_argument(
            "--overload-lag-ms",
            type=float,
            default=150.0,
            help="event-loop lag (ms) above which the gateway reads slower and tells devices to batch more; 0: off",
        )
        parser.add_argument(
            "--store-processes",
            type=int,
            default=None,
            help="processes that store the batches in the embedded mode (no CELERY_BROKER_URL; default 1); "
            "0: threads of the gateway process. With a broker the enqueue runs in threads.",
        )
        parser.add_argument(
            "--firmware-chunks-per-turn",
            type=int,
            default=defaults.firmware_chunks_per_turn,
            help="firmware chunks written at most per turn of the event loop",
        )
        parser.add_argument(
            "--firmware-chunk-max-lag-ms",
            type=float,
            default=defaults.firmware_chunk_max_lag_ms,
            help=f"firmware chunks wait while the event loop runs this many ms late (default "
            f"{defaults.firmware_chunk_max_lag_ms:g}): a rollout takes only the time readings leave; 0: never held",
        )
        parser.add_argument(
            "--firmware-chunk-mb-s",
            type=float,
            default=defaults.firmware_chunk_mb_s,
            help="at most this many MB/s of firmware chunks from this process; 0 (default): no cap",
        )
        parser.add_argument("--stats-every", type=float, default=30.0, help="seconds between stats log lines")
        parser.add_argument(
            "--gc-full-every",
            type=int,
            default=GC_FULL_EVERY,
            help=f"generation-1 collections before a full one (default {GC_FULL_EVERY}; Python's own is 10)",
        )
        parser.add_argument(
            "--loop",
            choices=LOOPS,
            # asyncio stays the default: its TLS read buffer is cut to 16 KiB (the memory per idle
            # connection that bench/connections.py measured); uvloop's TLS layer ignores that cut, and
            # bench/gateway_capacity.py found the gateway process was not the bottleneck.
            default="asyncio",
            help="event loop: asyncio (default), uvloop (libuv, less CPU per frame), or auto (uvloop when installed)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config, ssl_context = self.prepare(options)
        name, factory = loop_factory(options.get("loop", "auto"))
        self.stdout.write(f"Event loop: {name}.")
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._serve(options, config, ssl_context))

    def prepare(self, options: dict[str, Any]) -> tuple[GatewayConfig, Any]:
        """Validate the options; the gateway's configuration and TLS context."""
        cert, key = options["cert"], options["key"]
        if bool(cert) != bool(key):
            raise CommandError("Pass both --cert and --key, or neither (a development certificate is generated).")
        if cert:
            cert_path, key_path = Path(cert), Path(key)
            for path in (cert_path, key_path):
                if not path.is_file():
                    raise CommandError(f"{path} does not exist.")
        else:
            cert_path, key_path = dev_certificate(Path(settings.DATA_DIR))
            self.stdout.write(f"Using the development TLS certificate {cert_path} (pass --cert/--key in production).")
        full_every = options.get("gc_full_every", GC_FULL_EVERY)
        if not 1 <= full_every <= 100_000:
            raise CommandError(f"--gc-full-every must lie between 1 and 100000, not {full_every}.")
        if not 64 <= options["max_payload"] <= 0xFFFF:
            raise CommandError("--max-payload must lie between 64 and 65535 bytes.")
        live_round = options.get("live_round", GatewayConfig.live_round_s)
        if not 0 <= live_round <= 1:
            raise CommandError(f"--live-round must lie between 0 and 1 second, not {live_round:g}.")
        config = GatewayConfig(
            handshake_timeout_s=options["handshake_timeout"],
            idle_timeout_s=options["idle_timeout"],
            frame_timeout_s=options["frame_timeout"],
            max_payload=options["max_payload"],
            rate_per_s=options["rate"],
            rate_burst=options["burst"],
            max_unacked=min(255, options["max_unacked"]),
            drain_timeout_s=options["drain_timeout"],
            live_hold_over_s=max(0.0, options["live_hold_over"]),
            live_round_s=live_round,
            overload_lag_ms=options["overload_lag_ms"],
            store_processes=store_processes(options.get("store_processes")),
            firmware_chunks_per_turn=max(1, options["firmware_chunks_per_turn"]),
            firmware_chunk_max_lag_ms=max(0.0, options["firmware_chunk_max_lag_ms"]),
            firmware_chunk_mb_s=max(0.0, options["firmware_chunk_mb_s"]),
        )
        limit = raise_open_files_limit()
        self.stdout.write(f"Open-file limit {limit}: room for about {max(0, limit - 64):,} device connections.")
        return config, server_context(cert=cert_path, key=key_path)

    async def _serve(self, options: dict[str, Any], config: GatewayConfig, ssl_context: Any) -> None:
        layer = get_channel_layer()
        gateway = Gateway(
            ssl_context=ssl_context, config=config, channel_layer=layer, cluster=cluster_from_settings(layer=layer)
        )
        host, port = await gateway.start(host=options["host"], port=options["port"])
        collector_settle(options.get("gc_full_every", GC_FULL_EVERY))
        self._gc = GcPauses()
        gc.callbacks.append(self._gc.callback)
        self.stdout.write(self.style.SUCCESS(f"Gateway listening on {host}:{port} (TLS). SIGTERM drains gracefully."))
        install_signal_handlers(gateway)
        stats = asyncio.create_task(self._stats(gateway, options["stats_every"]))
        await gateway.wait_stopped()
        stats.cancel()

    async def _stats(self, gateway: Gateway, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            logger.info(
                "gateway: %d devices connected, %d handshakes in progress, %d waiting, stats %s, "
                "live sent %d dropped %d failed %d, %s",
                len(gateway.connections),
                gateway.admission.in_progress,
                gateway.admission.waiting,
                gateway.stats,
                gateway.publisher.sent,
                gateway.publisher.dropped,
                gateway.publisher.failed,
                self._gc,
            )
