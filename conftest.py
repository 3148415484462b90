"""Suite-wide fixtures. Service fixtures fail, not skip, under ENERGYBOX_REQUIRE_SERVICES=1 (CI)."""

from __future__ import annotations

import os

import pytest

SERVICE_VARS = {"postgresql": "DATABASE_URL", "redis": "REDIS_URL", "rabbitmq": "CELERY_BROKER_URL"}


def require_service(name: str) -> str:
    """The URL of a real service, or a skip (locally) / failure (CI) when it is not configured."""
    var = SERVICE_VARS[name]
    value = os.environ.get(var, "")
    expected_prefix = {"postgresql": "postgres", "redis": "redis", "rabbitmq": "amqp"}[name]
    if value.startswith(expected_prefix):
        return value
    message = f"{name} is not configured: set {var} (CI sets it in .ci/run)"
    if os.environ.get("ENERGYBOX_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


@pytest.fixture
def postgresql_url() -> str:
    return require_service("postgresql")


@pytest.fixture
def redis_url() -> str:
    return require_service("redis")


@pytest.fixture
def rabbitmq_url() -> str:
    return require_service("rabbitmq")


@pytest.fixture(autouse=True)
def _data_dir_in_tmp(settings, tmp_path_factory):
    """Tests never write into the developer's data folder (demo keys, dev certificates, signing keys)."""
    settings.DATA_DIR = tmp_path_factory.mktemp("data")
