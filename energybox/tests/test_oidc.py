"""The OIDC signing key: from the environment, from a file, or a development key made on first use."""

from __future__ import annotations

import stat

import pytest
from jwcrypto import jwk

from energybox import oidc


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, settings, tmp_path):
    monkeypatch.delenv("OIDC_RSA_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("OIDC_RSA_PRIVATE_KEY_FILE", raising=False)
    settings.DATA_DIR = tmp_path
    oidc._private_key_pem.cache_clear()
    yield
    oidc._private_key_pem.cache_clear()


def test_without_configuration_a_private_development_key_is_generated_once_into_the_data_folder(tmp_path):
    first = oidc.private_key_pem()
    key_file = tmp_path / oidc.DEV_KEY_NAME
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert jwk.JWK.from_pem(first.encode()).get("kty") == "RSA"
    oidc._private_key_pem.cache_clear()
    assert oidc.private_key_pem() == first


def test_the_key_from_the_environment_wins_and_its_escaped_newlines_are_restored(monkeypatch, tmp_path):
    pem = jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None).decode()
    monkeypatch.setenv("OIDC_RSA_PRIVATE_KEY", pem.replace("\n", "\\n"))
    assert oidc.private_key_pem() == pem
    assert not (tmp_path / oidc.DEV_KEY_NAME).exists()


def test_the_key_file_is_read_when_named(monkeypatch, tmp_path):
    pem = jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None).decode()
    path = tmp_path / "prod.pem"
    path.write_text(pem)
    monkeypatch.setenv("OIDC_RSA_PRIVATE_KEY_FILE", str(path))
    assert oidc.private_key_pem() == pem


def test_retired_keys_named_in_the_environment_are_published_beside_the_active_one(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    retired = jwk.JWK.generate(kty="RSA", size=2048)
    path = tmp_path / "retired.pem"
    path.write_bytes(retired.export_to_pem(private_key=True, password=None))
    probe = (
        "import json, django; django.setup(); from django.test import Client;"
        "print(json.dumps(Client().get('/o/.well-known/jwks.json').json()))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "energybox.settings.test",
        "ENERGYBOX_DATA_DIR": str(tmp_path),
        "OIDC_RSA_PRIVATE_KEYS_INACTIVE_FILES": str(path),
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kids = [key["kid"] for key in json.loads(out.stdout.strip().splitlines()[-1])["keys"]]
    assert len(kids) == 2 and retired.thumbprint() in kids
