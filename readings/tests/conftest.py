"""Fixtures of the readings tests that start services of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from readings.tests.brokers import RabbitNode, rabbitmq_node, require_rabbitmq_server


@pytest.fixture(scope="module")
def own_rabbitmq(tmp_path_factory) -> Iterator[RabbitNode]:
    """A RabbitMQ node of this test module's own (never the machine's), stopped after the module."""
    require_rabbitmq_server()
    with rabbitmq_node(tmp_path_factory.mktemp("broker")) as node:
        yield node
