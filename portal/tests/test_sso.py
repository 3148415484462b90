"""Portal sign-in through the platform's own OIDC provider, across two host names of one live server.

The browser signs in once at the provider (127.0.0.1); the portal on another host (localhost, a
separate cookie jar) then signs it in through OIDC without a password.
"""

from __future__ import annotations

import pytest
import requests

from accounts.tests.factories import USER_PASSWORD, MembershipFactory
from devices.tests.factories import FacilityFactory
from integrations.services import platform_application_register
from portal import sso

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def provider(live_server, settings, monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the live server speaks plain HTTP
    port = live_server.url.rsplit(":", 1)[1]
    portal = f"http://localhost:{port}"
    issuer = f"http://127.0.0.1:{port}/o"
    registered = platform_application_register(name="Portal", redirect_uris=f"{portal}/login/sso/callback/")
    settings.ENERGYBOX_SSO_ISSUER = issuer
    settings.ENERGYBOX_SSO_CLIENT_ID = registered.application.client_id
    settings.ENERGYBOX_SSO_CLIENT_SECRET = registered.client_secret
    sso._discovery_cache.clear()
    return portal, issuer


def _sign_in_at(base: str, browser: requests.Session, username: str) -> None:
    browser.get(f"{base}/login/", timeout=10)
    browser.post(
        f"{base}/login/",
        data={"username": username, "password": USER_PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": f"{base}/login/"},
        timeout=10,
    )


def test_a_user_signed_in_at_the_provider_is_signed_into_the_portal_without_a_password(provider):
    portal, issuer = provider
    facility = FacilityFactory(name="Filiale Nord")
    membership = MembershipFactory(tenant=facility.tenant)
    browser = requests.Session()
    _sign_in_at(issuer.removesuffix("/o"), browser, membership.user.username)
    assert browser.get(f"{portal}/", allow_redirects=False, timeout=10).status_code == 302  # not signed in there

    assert "Sign in with single sign-on" in browser.get(f"{portal}/login/", timeout=10).text
    landed = browser.get(f"{portal}/login/sso/", timeout=20)

    assert landed.url == f"{portal}/"
    assert "Filiale Nord" in landed.text


def test_a_callback_that_was_not_started_here_is_refused(provider):
    portal, _ = provider
    response = requests.get(f"{portal}/login/sso/callback/?code=x&state=forged", timeout=10)
    assert response.status_code == 400
    assert "does not match" in response.text


def test_a_forged_code_does_not_sign_anyone_in(provider):
    portal, _ = provider
    browser = requests.Session()
    started = browser.get(f"{portal}/login/sso/", allow_redirects=False, timeout=10)
    state = requests.utils.urlparse(started.headers["Location"]).query.split("state=")[1].split("&")[0]
    response = browser.get(f"{portal}/login/sso/callback/?code=forged&state={state}", timeout=10)
    assert response.status_code == 502
    assert "invalid_grant" in response.text
    assert browser.get(f"{portal}/", allow_redirects=False, timeout=10).status_code == 302


def test_without_configuration_the_login_page_offers_no_sso(client, settings):
    settings.ENERGYBOX_SSO_ISSUER = ""
    assert "single sign-on" not in client.get("/login/").content.decode()
    assert client.get("/login/sso/").status_code == 404
