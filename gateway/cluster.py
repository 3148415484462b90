"""Several gateway processes behind one TCP load balancer: who holds a device's connection, in Redis.

A device that reconnects lands on whichever gateway the balancer picks, while its old connection may
still look alive on another one (a NAT that forgot the flow, a mobile link that switched cells). Each
gateway therefore records, per device, an ownership key in Redis:

    <prefix>:gw:gen:<device_id>    INCR'd at every handshake: the connection's generation
    <prefix>:gw:owner:<device_id>  "<generation>:<gateway id>" of the newest connection

One Lua script claims both in one round trip and returns the previous owner. When the previous owner
is another gateway, a `device.replaced` command on the control bus (`devices.control`) tells it to drop
its older connection with REPLACED; it drops only a connection of a lower generation, so a device that
bounced A → B → A is never cut off by B's stale command.

Presence follows the key: a gateway that loses a connection marks the device offline only when it
still owns the key (a compare-and-delete), so an old gateway's late "offline" never overwrites the
new gateway's "online". Its presence flush checks the keys again right before it writes (a device
claimed elsewhere in the meantime is left alone). A gateway that dies without releasing (SIGKILL)
leaves its keys behind; they expire after `owner_ttl_s`, and `gateway.services.device_presence_sweep`
marks its devices offline from `last_seen`.

Redis being down never stops ingest: claims and releases then fail open (logged and counted), and a
connection behaves as with a single gateway.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from devices import control

logger = logging.getLogger(__name__)

# KEYS: gen, owner. ARGV: gateway id, ttl. Returns {generation, previous owner or false}.
_CLAIM = """
local gen = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local old = redis.call('SET', KEYS[2], gen .. ':' .. ARGV[1], 'EX', ARGV[2], 'GET')
return {gen, old}
"""
# KEYS: owner. ARGV: "<generation>:<gateway id>". 1 when this connection still owned the device.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def owner_value(generation: int, gateway_id: str) -> str:
    return f"{generation}:{gateway_id}"


def owner_parse(value: bytes | str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    generation, _, gateway_id = text.partition(":")
    return int(generation), gateway_id


class Cluster:
    def __init__(
        self,
        *,
        redis_url: str,
        prefix: str = "energybox",
        gateway_id: str | None = None,
        owner_ttl_s: int = 24 * 3600,
        layer: Any = None,
    ) -> None:
        self.gateway_id = gateway_id or uuid.uuid4().hex[:12]
        self._redis = aioredis.Redis.from_url(redis_url)
        self._prefix = f"{prefix}:gw"
        self._ttl = owner_ttl_s
        self._layer = layer
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._tasks: set[asyncio.Task[None]] = set()
        self.replacements_sent = 0
        self.failed = 0

    def _keys(self, device_id: int) -> tuple[str, str]:
        return f"{self._prefix}:gen:{device_id}", f"{self._prefix}:owner:{device_id}"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- claims ---------------------------------------------------------------------------------

    def claim(self, device_id: int, on_generation: Callable[[int], None]) -> None:
        """Take the device over (in the background); `on_generation` gets this connection's generation."""
        self._spawn(self._claim_now(device_id, on_generation))

    async def _claim_now(self, device_id: int, on_generation: Callable[[int], None]) -> None:
        try:
            generation, old = await self._claim(keys=self._keys(device_id), args=[self.gateway_id, self._ttl])
        except Exception:
            self.failed += 1
            logger.exception("cluster: claiming device %s failed; other gateways are not told", device_id)
            return
        on_generation(int(generation))
        previous = owner_parse(old)
        if previous is not None and previous[1] != self.gateway_id:
            self.replacements_sent += 1
            await control.device_control_send_async(
                device_id=device_id,
                kind=control.REPLACED,
                layer=self._layer,
                generation=int(generation),
                gateway=self.gateway_id,
            )

    def release(self, device_id: int, generation: int | None, on_released: Callable[[], None]) -> None:
        """Give the device up; `on_released` runs only if this connection was still its owner."""
        if generation is None:  # the claim never came back (Redis down): behave as one gateway alone
            on_released()
            return
        self._spawn(self._release_now(device_id, generation, on_released))

    async def _release_now(self, device_id: int, generation: int, on_released: Callable[[], None]) -> None:
        try:
            owned = await self._release(
                keys=[self._keys(device_id)[1]], args=[owner_value(generation, self.gateway_id)]
            )
        except Exception:
            self.failed += 1
            logger.exception("cluster: releasing device %s failed; marking it offline anyway", device_id)
            owned = 1
        if owned:
            on_released()

    async def not_owned_elsewhere(self, device_ids: Iterable[int]) -> set[int]:
        """Of these devices, those no other gateway holds now (right before writing them offline)."""
        ids = list(device_ids)
        if not ids:
            return set()
        try:
            values = await self._redis.mget([self._keys(device_id)[1] for device_id in ids])
        except Exception:
            self.failed += 1
            logger.exception("cluster: reading owners failed; writing presence as one gateway alone")
            return set(ids)
        kept = set()
        for device_id, value in zip(ids, values, strict=True):
            owner = owner_parse(value)
            if owner is None or owner[1] == self.gateway_id:
                kept.add(device_id)
        return kept

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()


def cluster_from_settings(*, layer: Any) -> Cluster | None:
    """The production wiring: a cluster whenever Redis is configured (one gateway alone otherwise)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return None
    return Cluster(redis_url=settings.REDIS_URL, prefix=settings.GATEWAY_CLUSTER_PREFIX, layer=layer)
