"""The websocket protocol of the live pages: client messages, server messages and close codes.

Client → server (JSON text, at most `MAX_MESSAGE_BYTES`):

    {"type": "ping", "id": 7}                         -> {"type": "pong", "id": 7, "now": <server ms>}
    {"type": "subscribe", "facilities": [3, 4, 9]}    park overview only: the facilities to follow

Server → client: `snapshot` once per subscription, then `readings` (at most one per device every
2 seconds), `status` (device online/offline) and, on the park overview, `facility` summaries.

A refused socket is accepted and closed at once with one of the codes below, so the browser can
tell why (a socket refused during the handshake only ever shows 1006).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

MAX_MESSAGE_BYTES = 4096
MAX_SUBSCRIBED_FACILITIES = 500


class CloseCode(IntEnum):
    UNAUTHENTICATED = 4401  # sign in, then reconnect
    FORBIDDEN = 4403  # no such facility or device for this user: another tenant's, or outside the grant
    MALFORMED = 4400  # a client message that is not valid protocol
    TOO_BIG = 1009  # RFC 6455 "message too big"


class LiveError(Exception):
    """A refusal; the consumer closes the socket with `code`, after telling the client `reason`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClientMessage:
    type: str
    id: int | None = None
    facilities: tuple[int, ...] = ()


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def parse_client_message(*, text: str | None, data: bytes | None, accepts_subscribe: bool = False) -> ClientMessage:
    """Parse one client message, or raise LiveError with the close code the client gets."""
    if data is not None:
        if len(data) > MAX_MESSAGE_BYTES:
            raise LiveError(CloseCode.TOO_BIG, f"Messages are limited to {MAX_MESSAGE_BYTES} bytes.")
        raise LiveError(CloseCode.MALFORMED, "Send JSON text messages, not binary ones.")
    text = text or ""
    if len(text) > MAX_MESSAGE_BYTES or len(text.encode()) > MAX_MESSAGE_BYTES:
        raise LiveError(CloseCode.TOO_BIG, f"Messages are limited to {MAX_MESSAGE_BYTES} bytes.")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise LiveError(CloseCode.MALFORMED, "A message must be a JSON object.") from exc
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise LiveError(CloseCode.MALFORMED, 'A message must be a JSON object with a "type".')
    kind = body["type"]
    if kind == "ping":
        if "id" in body and not (_is_id(body["id"]) or body["id"] == 0):
            raise LiveError(CloseCode.MALFORMED, 'A ping "id" must be a non-negative integer.')
        return ClientMessage(type="ping", id=body.get("id"))
    if kind == "subscribe" and accepts_subscribe:
        facilities = body.get("facilities")
        if not isinstance(facilities, list) or not all(_is_id(f) for f in facilities):
            raise LiveError(CloseCode.MALFORMED, '"facilities" must be a list of facility ids.')
        if len(facilities) > MAX_SUBSCRIBED_FACILITIES:
            raise LiveError(CloseCode.MALFORMED, f"Subscribe to at most {MAX_SUBSCRIBED_FACILITIES} facilities.")
        return ClientMessage(type="subscribe", facilities=tuple(dict.fromkeys(facilities)))
    raise LiveError(CloseCode.MALFORMED, f"Unknown message type {kind[:40]!r}.")
