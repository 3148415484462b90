"""The RS256 key that signs OpenID Connect ID tokens.

Taken from OIDC_RSA_PRIVATE_KEY (the PEM itself) or OIDC_RSA_PRIVATE_KEY_FILE (a path). With
neither set, a development key is generated into the data folder the first time a token is
signed, so `make run` works on a fresh laptop; production settings refuse to start without one.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils.functional import lazy

DEV_KEY_NAME = "oidc-dev-rsa.pem"


def _generate(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed, so two processes starting at once never
    # read half a key; the loser of the race simply signs with the winner's key.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    if not path.exists():
        tmp.replace(path)
    else:
        tmp.unlink()


@functools.cache
def _private_key_pem(inline: str, key_file: str, data_dir: str) -> str:
    if inline.strip():
        return inline.replace("\\n", "\n")
    if key_file:
        return Path(key_file).expanduser().read_text()
    path = Path(data_dir) / DEV_KEY_NAME
    if not path.exists():
        _generate(path)
    return path.read_text()


def private_key_pem() -> str:
    from django.conf import settings

    return _private_key_pem(
        os.environ.get("OIDC_RSA_PRIVATE_KEY", ""),
        os.environ.get("OIDC_RSA_PRIVATE_KEY_FILE", ""),
        str(settings.DATA_DIR),
    )


# django-oauth-toolkit reads its settings when it signs, so the key is resolved then, not at import.
lazy_private_key_pem = lazy(private_key_pem, str)
