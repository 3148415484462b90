"""The dead-letter queue of ingest: messages a worker can never store (malformed, unknown version).

On RabbitMQ the `readings` queue names `readings.dead` as its dead-letter exchange; the ingest task
rejects such a message without requeueing it, and RabbitMQ moves it there (with an `x-death`
header saying from where and how often). Nothing is lost: an operator lists the dead letters and,
once a worker that understands them is deployed, replays them into `readings`
(`manage.py deadletters list|replay`). Other brokers have no dead-lettering: there the message is
dropped and logged, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from kombu import Connection, Exchange, Producer, Queue

from readings.errors import ReadingsError

DEAD_EXCHANGE = "readings.dead"
DEAD_QUEUE = "readings.dead"
INGEST_EXCHANGE = "readings.ingest"  # energybox/settings/base.py CELERY_TASK_QUEUES
INGEST_ROUTING_KEY = "readings"


class DeadLettersUnavailable(ReadingsError):
    """The broker has no dead-letter queue (no broker, or not RabbitMQ)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    task_id: str
    task: str
    reason: str  # RabbitMQ's x-death reason: "rejected", "delivery_limit", …
    deaths: int  # how often this message was dead-lettered (replayed and rejected again)
    size: int  # bytes of the message body

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.task_id, "task": self.task, "reason": self.reason, "deaths": self.deaths, "bytes": self.size}


def dead_letters_supported() -> bool:
    return settings.CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))


def dead_queue() -> Queue:
    arguments = {"x-queue-type": "quorum"} if settings.QUEUE_TYPE == "quorum" else {}
    exchange = Exchange(DEAD_EXCHANGE, type="direct", durable=True)
    return Queue(DEAD_QUEUE, exchange, routing_key=DEAD_QUEUE, durable=True, queue_arguments=arguments)


def deadletters_declare(*, connection: Connection) -> None:
    """Declare the dead-letter exchange and queue: without them RabbitMQ would drop dead letters."""
    dead_queue()(connection.default_channel).declare()


def _connection() -> Connection:
    if not dead_letters_supported():
        raise DeadLettersUnavailable("dead letters need RabbitMQ: CELERY_BROKER_URL is not an amqp:// URL")
    from celery import current_app as app

    return app.connection_for_write()


def _describe(message: Any) -> DeadLetter:
    headers = message.headers or {}
    deaths = headers.get("x-death") or [{}]
    return DeadLetter(
        task_id=str(headers.get("id") or message.properties.get("correlation_id") or ""),
        task=str(headers.get("task") or ""),
        reason=str(deaths[0].get("reason", "")),
        deaths=sum(int(d.get("count", 1)) for d in deaths if d),
        size=len(message.body),
    )


def _get(channel: Any) -> Any:
    raw = channel.basic_get(DEAD_QUEUE, no_ack=False)
    return None if raw is None else channel.message_to_python(raw)


def deadletters_count() -> int:
    with _connection() as conn:
        deadletters_declare(connection=conn)
        _, messages, _ = conn.default_channel.queue_declare(DEAD_QUEUE, passive=True)
        return int(messages)


def deadletters_list(*, limit: int = 100) -> list[DeadLetter]:
    """Up to `limit` dead letters, oldest first; they all stay in the queue."""
    found = []
    with _connection() as conn:
        deadletters_declare(connection=conn)
        channel = conn.channel()
        try:
            for _ in range(limit):
                message = _get(channel)
                if message is None:
                    break
                found.append(_describe(message))
        finally:
            # Closing the channel hands every message we took back to the queue, unacknowledged.
            channel.close()
    return found


def deadletters_replay(*, task_ids: Iterable[str] | None = None, limit: int = 10_000) -> int:
    """Publish dead letters back into the ingest queue (all, or those with `task_ids`); return how many.

    Each is acknowledged in the dead-letter queue only after the broker confirmed its copy in
    `readings`, so a replay interrupted half-way loses nothing (it may leave a copy in both, which
    is harmless: ingest is idempotent).
    """
    wanted = set(task_ids) if task_ids is not None else None
    replayed = 0
    with _connection() as conn:
        deadletters_declare(connection=conn)
        channel = conn.channel()
        producer = Producer(channel)
        try:
            for _ in range(limit):
                message = _get(channel)
                if message is None:
                    break
                if wanted is not None and _describe(message).task_id not in wanted:
                    continue  # stays unacknowledged; returned to the queue when the channel closes
                # x-death stays: RabbitMQ counts on in it if the replayed message dies again.
                headers = dict(message.headers or {})
                properties = {
                    k: message.properties[k] for k in ("correlation_id", "reply_to") if k in message.properties
                }
                producer.publish(
                    message.body,
                    exchange=INGEST_EXCHANGE,
                    routing_key=INGEST_ROUTING_KEY,
                    headers=headers,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    delivery_mode=2,
                    **properties,
                )
                message.ack()
                replayed += 1
        finally:
            channel.close()
    return replayed


def deadletters_to_json(letters: Iterable[DeadLetter]) -> str:
    return json.dumps([letter.as_dict() for letter in letters])
