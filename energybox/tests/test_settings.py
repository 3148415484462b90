"""Settings load with no environment (embedded defaults) and with the production variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings as s; django.setup();"
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'],"
    "'eager': s.CELERY_TASK_ALWAYS_EAGER, 'broker': s.CELERY_BROKER_URL, 'debug': s.DEBUG}))"
)


def _load(module: str, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "CELERY", "DJANGO"))}
    clean.update(env, DJANGO_SETTINGS_MODULE=module)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_environment_gives_the_embedded_defaults(tmp_path):
    got = _load("energybox.settings.local", {"ENERGYBOX_DATA_DIR": str(tmp_path)})
    assert got["db"] == "django.db.backends.sqlite3"
    assert got["layer"] == "channels.layers.InMemoryChannelLayer"
    assert got["eager"] is True


def test_the_production_variables_select_the_real_services():
    got = _load(
        "energybox.settings.production",
        {
            "DJANGO_SECRET_KEY": "x" * 50,
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/energybox",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
            "OIDC_RSA_PRIVATE_KEY_FILE": "/etc/energybox/oidc.pem",
        },
    )
    assert got["db"] == "django.db.backends.postgresql"
    assert got["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert got["eager"] is False
    assert got["debug"] is False


def test_production_refuses_to_start_without_a_secret_key():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "CELERY", "DJANGO"))}
    clean["DJANGO_SETTINGS_MODULE"] = "energybox.settings.production"
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in out.stderr


def test_production_refuses_to_start_without_an_oidc_signing_key():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "CELERY", "DJANGO", "OIDC"))}
    clean.update(
        DJANGO_SETTINGS_MODULE="energybox.settings.production",
        DJANGO_SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/energybox",
        REDIS_URL="redis://127.0.0.1:6379/0",
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
    )
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "OIDC_RSA_PRIVATE_KEY must be set" in out.stderr


def test_a_malformed_boolean_is_a_clear_error():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "CELERY", "DJANGO"))}
    clean.update(DJANGO_SETTINGS_MODULE="energybox.settings.local", DJANGO_DEBUG="maybe")
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "DJANGO_DEBUG='maybe' is not a boolean" in out.stderr
