"""/app/: the built shell, its service worker and manifest; the portal's link for households; the app's token."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from oauth2_provider.models import AccessToken

from accounts.models import Tenant
from accounts.tests.factories import USER_PASSWORD, MembershipFactory, TenantFactory
from consumer.tests.test_apis import app_token, household
from integrations.models import Application
from integrations.scopes import CONSUMER_APP_CLIENT_ID, READINGS_READ
from integrations.tests.factories import AccessTokenFactory
from integrations.websocket import access_for_bearer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _built():
    if not finders.find("app/index.html"):
        pytest.fail("The app is not built: `make app` (make test and .ci/run build it first).")


def test_the_shell_is_served_at_app_with_the_public_client_id_and_no_cdn(client):
    response = client.get("/app/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'content="{CONSUMER_APP_CLIENT_ID}"' in html
    assert "/app/manifest.webmanifest" in html and "/static/app/assets/" in html
    assert "https://" not in html and "http://" not in html
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_the_service_worker_is_scoped_to_the_app_and_never_caches_the_api(client):
    response = client.get("/app/sw.js")
    assert response.status_code == 200 and response["Service-Worker-Allowed"] == "/app/"
    text = response.content.decode()
    assert "/api/" not in text.split("// Everything else")[0]
    manifest = client.get("/app/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.json()["start_url"] == "/app/"
    assert client.post("/app/").status_code == 405


def test_the_portal_links_a_household_to_the_app_and_not_an_enterprise(client):
    home = MembershipFactory(tenant=TenantFactory(kind=Tenant.Kind.CONSUMER))
    client.login(username=home.user.username, password=USER_PASSWORD)
    assert "data-consumer-app" in client.get("/", follow=True).content.decode()
    office = MembershipFactory(tenant=TenantFactory(kind=Tenant.Kind.ENTERPRISE))
    client.login(username=office.user.username, password=USER_PASSWORD)
    assert "data-consumer-app" not in client.get("/", follow=True).content.decode()


def test_a_revoked_app_token_is_a_401_so_the_app_signs_in_again(client):
    _, user = household()
    headers = app_token(user)
    assert client.get("/api/v1/me/", **headers).status_code == 200
    AccessToken.objects.filter(user=user).delete()
    assert client.get("/api/v1/me/", **headers).status_code == 401


def test_the_app_token_opens_the_live_websocket_for_its_household_only():
    mf, user = household()
    application = Application.objects.get(client_id=CONSUMER_APP_CLIENT_ID)
    token = AccessTokenFactory(application=application, user=user, scope=READINGS_READ)
    granted = access_for_bearer(token.token)
    assert granted.access.tenant_id == mf.facility.tenant_id
    assert granted.access.user_id == user.pk
