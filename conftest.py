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


@pytest.fixture(autouse=True)
def _celery_join_state_reset():
    """A Celery worker run inside the test process (its Pool step) marks the process as "inside a
    worker", after which `AsyncResult.get()` raises "Never call result.get() within a task!" in every
    later test. Each test starts and ends outside a worker."""
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(False)
    yield
    _set_task_join_will_block(False)


@pytest.fixture
def live_layer(request: pytest.FixtureRequest) -> str:
    """The channel layer of the live tests: real Redis whenever CI (or the developer) configures it."""
    from portal.tests.live import require_live_layer

    return require_live_layer(request)


@pytest.fixture
async def close_thread_connections():
    """For async tests whose ORM calls run in asgiref's sync thread (consumers, async views).

    Closes that thread's database connection afterwards, or it outlives the test and blocks the test
    database's teardown.
    """
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
def fresh_channel_metadata():
    """The readings store's per-process channel cache, empty before and after the test (ids are reused)."""
    from readings import metadata

    metadata.clear_caches()
    yield
    metadata.clear_caches()
