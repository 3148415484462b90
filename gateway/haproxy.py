"""The HAProxy configuration that puts several `rungateway` processes behind one TCP port.

TCP mode (layer 4): TLS ends at the gateways, so HAProxy never holds a device key or certificate and a
gateway still sees the device's own handshake. `leastconn` spreads long-lived connections evenly;
a gateway that stops answering is marked down after two failed checks half a second apart, its
sessions are shut so the devices reconnect at once, and a connect that fails is redispatched to
another gateway. Used by `scripts/gateway-cluster.sh`, the tests and `bench/scale.py`:

    python -m gateway.haproxy FRONTEND_PORT BACKEND_PORT [BACKEND_PORT ...] > haproxy.cfg
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence


def maxconn_for_fd_limit() -> int:
    """HAProxy needs two descriptors per proxied connection (device side and gateway side)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1_048_576 if hard == resource.RLIM_INFINITY else hard
    return max(256, (limit - 64) // 2)


def haproxy_config(
    *, frontend_port: int, backends: Sequence[tuple[str, int]], host: str = "127.0.0.1", maxconn: int | None = None
) -> str:
    maxconn = maxconn or maxconn_for_fd_limit()
    servers = "\n".join(
        f"  server gw{n} {backend_host}:{port} check" for n, (backend_host, port) in enumerate(backends)
    )
    return f"""global
  maxconn {maxconn}
  log stderr format raw local0 warning

defaults
  mode tcp
  log global
  option dontlognull
  retries 3
  option redispatch
  timeout connect 2s
  timeout client 15m
  timeout server 15m
  timeout check 1s

frontend devices
  bind {host}:{frontend_port}
  maxconn {maxconn}
  default_backend gateways

backend gateways
  balance leastconn
  default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions maxconn {maxconn}
{servers}
"""


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write(__doc__ or "")
        return 2
    frontend, *ports = (int(arg) for arg in argv)
    sys.stdout.write(haproxy_config(frontend_port=frontend, backends=[("127.0.0.1", port) for port in ports]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
