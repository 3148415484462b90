"""The API docs describe operations in users' words, not the views' internal docstrings."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_every_operation_has_a_summary_and_no_internal_docstring(client):
    schema = client.get("/api/schema/?format=json").json()
    operations = [op for ops in schema["paths"].values() for op in ops.values() if isinstance(op, dict)]
    assert operations
    for operation in operations:
        assert operation.get("summary"), operation["operationId"]
        assert "self.access" not in operation.get("description", ""), operation["operationId"]
    series = schema["paths"]["/api/v1/readings/series/"]["get"]
    assert series["summary"] == "Read measured values over a period"


def test_redoc_keeps_the_browser_from_loading_anything_from_a_cdn(client):
    html = client.get("/api/redoc/").content.decode()
    assert "Content-Security-Policy" in html and "img-src 'self'" in html
    assert "fonts.googleapis.com" not in html
    assert "cdn." not in html
