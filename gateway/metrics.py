"""Prometheus metrics of a gateway process, fed by `Gateway.count()` (one hook, no edits elsewhere).

Every name the gateway counts becomes a sample of `energybox_gateway_events_total{event=…}`;
frames, NACKs by code and handshakes also get metrics of their own, so dashboards read
`rate(energybox_gateway_frames_total[1m])` as frames/s. Gauges (open connections, authenticated
devices, live publishes sent and dropped) are read from the gateway at scrape time.
With ENERGYBOX_GATEWAY_METRICS_PORT set, the first count starts this process's exporter.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from readings import metrics as readings_metrics

if TYPE_CHECKING:
    from gateway.server import Gateway

NACK_PREFIX = "nack_"

EVENTS = Counter("energybox_gateway_events", "Everything a gateway counts, by name (see Gateway.stats).", ["event"])
FRAMES = Counter("energybox_gateway_frames", "Frames received from authenticated devices.")
NACKS = Counter("energybox_gateway_nacks", "NACKs sent to devices, by error code.", ["code"])
HANDSHAKES = Counter("energybox_gateway_handshakes", "Devices that completed the handshake (authenticated).")
READINGS_ACKED = Counter("energybox_gateway_readings_acked", "Readings acknowledged to devices (durably enqueued).")

_DEDICATED: dict[str, Any] = {"frames": FRAMES, "authenticated": HANDSHAKES, "readings_acked": READINGS_ACKED}
_children: dict[str, Any] = {}
_gateways: weakref.WeakSet[Gateway] = weakref.WeakSet()


class GatewayCollector(Collector):
    """Open connections, authenticated devices and live publishes of the gateways in this process."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gateways = list(_gateways)
        yield GaugeMetricFamily(
            "energybox_gateway_connections",
            "Open device connections (TLS done).",
            value=sum(len(g._all) for g in gateways),
        )
        yield GaugeMetricFamily(
            "energybox_gateway_devices_online",
            "Authenticated devices connected to this process.",
            value=sum(len(g.connections) for g in gateways),
        )
        published = CounterMetricFamily(
            "energybox_live_publishes", "Live messages to the channel layer, by outcome.", labels=["outcome"]
        )
        for outcome in ("sent", "dropped", "failed"):
            published.add_metric([outcome], sum(getattr(g.publisher, outcome) for g in gateways))
        yield published


_collector = GatewayCollector()


def count(gateway: Gateway, name: str, n: int = 1) -> None:
    """The hook of `Gateway.count()`."""
    if gateway not in _gateways:
        _watch(gateway)
    child = _children.get(name)
    if child is None:
        child = _children[name] = EVENTS.labels(event=name)
    child.inc(n)
    dedicated = _DEDICATED.get(name)
    if dedicated is not None:
        dedicated.inc(n)
    elif name.startswith(NACK_PREFIX):
        NACKS.labels(code=name.removeprefix(NACK_PREFIX)).inc(n)


def _watch(gateway: Gateway) -> None:
    if not _gateways:
        try:
            REGISTRY.register(_collector)
        except ValueError:
            pass  # registered by an earlier gateway of this process
    port = int(getattr(settings, "GATEWAY_METRICS_PORT", 0) or 0)
    if port:
        readings_metrics.exporter_start(port=port, addr=settings.METRICS_BIND)  # once per port
    _gateways.add(gateway)
