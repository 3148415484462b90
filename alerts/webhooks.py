"""Webhook targets a tenant may name (the SSRF guard), and the signature receivers check."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from alerts.errors import AlertsError

SIGNATURE_HEADER = "X-Energybox-Signature"


def sign(*, secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _allowed(host: str, port: int) -> bool:
    # Entries name a host ("hooks.internal") or a host and port ("127.0.0.1:8099").
    names = {entry.strip().lower() for entry in settings.ALERTS_WEBHOOK_ALLOWED_HOSTS if entry.strip()}
    return host.lower() in names or f"{host.lower()}:{port}" in names


def webhook_url_check(url: str) -> None:
    """Refuse a URL that is not https to a public address, unless the allow-list names its host.

    Checked when the webhook is stored and again before every delivery, since a name may come to
    resolve to a private address after it was accepted.
    """
    if len(url) > 500:
        raise AlertsError("The webhook URL is longer than 500 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise AlertsError("The webhook URL is not a valid URL.") from exc
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        raise AlertsError("The webhook URL must be an https:// URL with a host.")
    if parts.username or parts.password:
        raise AlertsError("The webhook URL must not carry a user name or password.")
    if _allowed(host, port):
        return
    if parts.scheme != "https":
        raise AlertsError("The webhook URL must use https://.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AlertsError(f"The webhook host {host!r} does not resolve.") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise AlertsError(
                f"The webhook host {host!r} resolves to the non-public address {address}; "
                "only public addresses are allowed."
            )
