"""Ed25519 device keys. The platform keeps only public keys; a private key is shown once and forgotten."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def key_pair_generate() -> tuple[Ed25519PrivateKey, bytes]:
    """A fresh private key and its raw 32-byte public key."""
    private_key = Ed25519PrivateKey.generate()
    return private_key, public_key_bytes(private_key)


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_pem(private_key: Ed25519PrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def private_key_load(text: str | bytes) -> Ed25519PrivateKey:
    """Accept a PKCS#8 PEM or the 32-byte seed as 64 hex digits."""
    raw = text.encode() if isinstance(text, str) else text
    stripped = raw.strip()
    if stripped.startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(stripped, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM does not hold an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(stripped.decode()))


def signature_valid(*, public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def fingerprint(public_key: bytes) -> str:
    """A short, stable label of a public key for the admin (not a secret)."""
    return hashlib.sha256(public_key).hexdigest()[:16]
