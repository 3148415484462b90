"""The OpenAPI 3 schema and its two viewers, served with no CDN."""

from __future__ import annotations

import re

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_the_schema_is_openapi_3_and_lists_every_api_path(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/facilities/" in schema["paths"]
    assert "/api/v1/channels/{id}/" in schema["paths"]
    oauth = schema["components"]["securitySchemes"]["oauth2"]
    assert set(oauth["flows"]) == {"clientCredentials", "authorizationCode"}
    assert "readings:read" in oauth["flows"]["clientCredentials"]["scopes"]


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_viewers_load_their_assets_from_this_server_not_a_cdn(client, path):
    html = client.get(path).content.decode()
    assert "drf_spectacular_sidecar" in html
    external = [url for url in re.findall(r'(?:src|href)="(https?://[^"]+)"', html)]
    assert external == []
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset
