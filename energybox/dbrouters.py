"""Reads of series, dashboards, bills and exports on a PostgreSQL streaming replica, within a lag bound.

Off unless `DATABASE_REPLICA_URL` is set (the settings then add the `replica` alias and this router).
Only reads made while a web request is served go to the replica, and only reads of the apps in
`DATABASE_REPLICA_APPS`: workers, the gateway and beat always read the primary, because what they
read they write back (rollups from buckets, bills from rollups).

Read-your-writes: a request that writes (any ORM or store write, or an unsafe method) reads the
primary for the rest of that request, and its user reads the primary for
`DATABASE_REPLICA_STICKY_S` seconds afterwards (a session marker for portal users, a cache key for
token users, whose requests carry no session). A replica whose replay lags more than
`DATABASE_REPLICA_MAX_LAG_S`, or that cannot be reached, is skipped until the next check.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

logger = logging.getLogger(__name__)

PRIMARY = "default"
REPLICA = "replica"
SESSION_MARKER = "energybox_wrote_until"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# 0 when the replica has replayed everything it received (an idle primary is no lag), else the age of
# the last transaction it replayed: a paused or slow replay shows as growing lag.
LAG_SQL = (
    "SELECT pg_is_in_recovery(), CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 'Infinity') END"
)


@dataclass
class _RequestReads:
    """What the router knows of the request being served."""

    request: HttpRequest
    wrote: bool = False
    sticky: bool | None = None  # the user's read-your-writes window, looked up on the first routed read


_current: contextvars.ContextVar[_RequestReads | None] = contextvars.ContextVar("energybox_request_reads", default=None)


@dataclass
class _LagCheck:
    checked_at: float = float("-inf")
    usable: bool = False
    lag_s: float = float("inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


_lag = _LagCheck()


def replica_configured() -> bool:
    return REPLICA in connections.settings


def replica_lag_s() -> float:
    """The replica's replay lag in seconds (infinite when it is not a replica or cannot be reached)."""
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(LAG_SQL)
            in_recovery, lag = cursor.fetchone()
    except DatabaseError:
        logger.warning("the read replica cannot be reached: reads go to the primary", exc_info=True)
        connections[REPLICA].close()
        return float("inf")
    return float(lag) if in_recovery else float("inf")


def replica_usable() -> bool:
    """Whether the replica's lag is within the bound, checked at most every `DATABASE_REPLICA_CHECK_S`."""
    now = time.monotonic()
    with _lag.lock:
        if now - _lag.checked_at >= settings.DATABASE_REPLICA_CHECK_S:
            _lag.lag_s = replica_lag_s()
            _lag.usable = _lag.lag_s <= settings.DATABASE_REPLICA_MAX_LAG_S
            _lag.checked_at = now
        return _lag.usable


@dataclass(frozen=True)
class ReplicaState:
    lag_s: float  # infinite when the replica cannot be reached or is not in recovery
    in_use: bool  # whether the router sends reads there now
    max_lag_s: float


def replica_state() -> ReplicaState:
    """What `/healthz` and `/metrics` report: the lag the router last measured and its verdict."""
    in_use = replica_usable()
    return ReplicaState(lag_s=_lag.lag_s, in_use=in_use, max_lag_s=settings.DATABASE_REPLICA_MAX_LAG_S)


def forget_lag_check() -> None:
    _lag.checked_at = float("-inf")


def _user_key(user_id: Any) -> str:
    return f"dbrouters:wrote:{user_id}"


def _user_wrote_recently(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    session = getattr(request, "session", None)
    if session is not None:
        marked_user, until = session.get(SESSION_MARKER, (None, 0))
        if marked_user == user.pk and until > time.time():
            return True
    return bool(cache.get(_user_key(user.pk)))


def _mark_user_wrote(request: HttpRequest) -> None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return
    sticky_s = settings.DATABASE_REPLICA_STICKY_S
    # Only a session that signed the user in carries the marker: a token request must not start one.
    session = getattr(request, "session", None)
    if session is not None and session.session_key is not None:
        session[SESSION_MARKER] = (user.pk, time.time() + sticky_s)
    cache.set(_user_key(user.pk), 1, timeout=sticky_s)


class ReplicaRouter:
    """`DATABASE_ROUTERS` entry: reads to the replica when the request and the replica allow it."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        state = _current.get()
        if state is None or model._meta.app_label not in settings.DATABASE_REPLICA_APPS:
            return None
        if state.wrote or connections[PRIMARY].in_atomic_block:
            return PRIMARY
        if state.sticky is None:
            state.sticky = _user_wrote_recently(state.request)
        if state.sticky or not replica_usable():
            return PRIMARY
        return REPLICA

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        state = _current.get()
        if state is not None:
            state.wrote = True
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # The replica holds the primary's rows: objects read from either belong together.
        return True

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        return db != REPLICA


class ReplicaReadsMiddleware:
    """Lets the router send this request's reads to the replica, and remembers a user who wrote."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        state = _RequestReads(request=request, wrote=request.method not in SAFE_METHODS)
        token = _current.set(state)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        if state.wrote:
            _mark_user_wrote(request)
        if isinstance(response, StreamingHttpResponse):
            # A streamed export reads while the server pulls its chunks, after this returned: each
            # chunk is read with the request's routing, or every export would read the primary.
            content = response.streaming_content
            response.streaming_content = (
                _async_chunks_in(state, content) if response.is_async else _chunks_in(state, content)  # type: ignore[arg-type]
            )
        return response


def _chunks_in(state: _RequestReads, content: Iterable[Any]) -> Iterator[Any]:
    iterator = iter(content)
    while True:
        token = _current.set(state)
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            _current.reset(token)
        yield chunk


async def _async_chunks_in(state: _RequestReads, content: AsyncIterable[Any]) -> AsyncIterator[Any]:
    iterator = aiter(content)
    while True:
        # sync_to_async copies this context into the thread that pulls the chunk from the database.
        token = _current.set(state)
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        finally:
            _current.reset(token)
        yield chunk
