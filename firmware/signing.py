"""The platform's firmware-signing key: from ENERGYBOX_FIRMWARE_SIGNING_KEY, or generated once into DATA_DIR.

Devices carry the public half (`signing_public_key`) and refuse images it did not sign.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from devices.keys import private_key_load, private_key_pem, public_key_bytes


def _key_file() -> Path:
    return Path(settings.DATA_DIR) / "firmware-signing-key.pem"


def signing_key() -> Ed25519PrivateKey:
    configured: str = getattr(settings, "FIRMWARE_SIGNING_KEY", "")
    if configured:
        return private_key_load(configured)
    path = _key_file()
    if path.exists():
        return private_key_load(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    # O_EXCL: two processes generating at once must not end up signing with different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return private_key_load(path.read_bytes())
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key_pem(key))
    return key


def signing_public_key() -> bytes:
    return public_key_bytes(signing_key())
