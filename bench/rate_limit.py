"""What the per-device rate limit costs per frame: the gateway's token bucket against pyrate-limiter.

The gateway checks the limit on every authenticated frame, so its cost is paid at the full frame
rate. Both limiters run in memory (one gateway process); a limit shared by every gateway would add
a Redis round trip per frame on top (pyrate-limiter's RedisBucket), about 100 µs on this machine
against the sub-microsecond figures here. Last line: {"token_bucket_ns": …, "pyrate_limiter_ns": …}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energybox.settings.local")
import django  # noqa: E402

django.setup()  # gateway.server imports models; nothing here touches a database

from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate  # noqa: E402

from gateway.server import TokenBucket  # noqa: E402

N = int(os.environ.get("BENCH_RATE_CHECKS", "200000"))
DEVICES = 1000


def per_check_ns(take) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter_ns()
    for n in range(N):
        take(n % DEVICES)
    return (time.perf_counter_ns() - started) / N


def main() -> None:
    buckets = {d: TokenBucket(rate=1e9, burst=1e9) for d in range(DEVICES)}
    ours = per_check_ns(lambda d: buckets[d].take())
    limiter = Limiter(InMemoryBucket([Rate(10**9, Duration.SECOND)]))
    names = [f"device-{d}" for d in range(DEVICES)]
    theirs = per_check_ns(lambda d: limiter.try_acquire(names[d]))
    print(json.dumps({"checks": N, "token_bucket_ns": round(ours), "pyrate_limiter_ns": round(theirs)}))


if __name__ == "__main__":
    main()
