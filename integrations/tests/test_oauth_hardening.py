"""Findings of the independent security test (issue 18) on the OAuth 2.0 / OIDC provider, each against
a live server with real clients: tokens only in the Authorization header, a replayed code revokes its
tokens, discovery lists the API scopes, and the consent page names no foreign application."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
import requests
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError
from requests_oauthlib import OAuth2Session

from accounts.tests.factories import MembershipFactory
from devices.tests.factories import FacilityFactory
from integrations.scopes import API_SCOPES, FLEET_READ
from integrations.tests.factories import CLIENT_SECRET, ApplicationFactory
from integrations.tests.test_oauth_flows import (
    REDIRECT_URI,
    _authorize,
    _client_credentials_session,
    _pkce_app,
    _signed_in_browser,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _plain_http_for_the_test_server(monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def _signed_in_user_token(live_server, *, scope):
    membership = MembershipFactory(tenant=FacilityFactory(name="Granted").tenant)
    application = _pkce_app(membership.tenant)
    browser = _signed_in_browser(live_server, membership.user)
    oauth = OAuth2Session(application.client_id, redirect_uri=REDIRECT_URI, scope=scope, pkce="S256")
    url, _ = oauth.authorization_url(f"{live_server.url}/o/authorize/")
    callback = _authorize(live_server, browser, url).headers["Location"]
    token = oauth.fetch_token(
        f"{live_server.url}/o/token/", authorization_response=callback, include_client_id=True, timeout=10
    )
    return oauth, application, callback, token


def _redeem_again(live_server, oauth, application, callback) -> requests.Response:
    """The token request of the code in `callback`, once more (a stolen or retried code)."""
    code = parse_qs(urlparse(callback).query)["code"][0]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data |= {"client_id": application.client_id, "code_verifier": oauth._code_verifier}
    return requests.post(f"{live_server.url}/o/token/", data=data, timeout=10)


def test_an_access_token_in_the_query_string_is_refused_by_the_api(live_server):
    application = ApplicationFactory(tenant=FacilityFactory().tenant, scope=FLEET_READ)
    token = _client_credentials_session(live_server, application).token["access_token"]

    in_url = requests.get(f"{live_server.url}/api/v1/facilities/", params={"access_token": token}, timeout=10)
    in_header = requests.get(
        f"{live_server.url}/api/v1/facilities/", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )

    assert in_url.status_code == 401
    assert in_url.json()["error"]["status"] == 401
    assert in_header.status_code == 200


def test_userinfo_refuses_a_token_in_the_query_string_or_the_body_but_reads_the_header(live_server):
    oauth, _, _, token = _signed_in_user_token(live_server, scope=["openid", "profile", FLEET_READ])
    url = f"{live_server.url}/o/userinfo/"

    assert requests.get(url, params={"access_token": token["access_token"]}, timeout=10).status_code == 401
    assert requests.post(url, data={"access_token": token["access_token"]}, timeout=10).status_code == 401
    assert oauth.get(url, timeout=10).status_code == 200


def test_replaying_an_authorization_code_revokes_the_tokens_issued_from_it(live_server):
    oauth, application, callback, token = _signed_in_user_token(live_server, scope=["openid", FLEET_READ])
    assert oauth.get(f"{live_server.url}/api/v1/facilities/", timeout=10).status_code == 200

    replayed = _redeem_again(live_server, oauth, application, callback)

    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    assert oauth.get(f"{live_server.url}/api/v1/facilities/", timeout=10).status_code == 401
    with pytest.raises(InvalidGrantError):  # the refresh token went with them
        oauth.refresh_token(
            f"{live_server.url}/o/token/",
            refresh_token=token["refresh_token"],
            client_id=application.client_id,
            timeout=10,
        )


def test_a_replayed_code_also_revokes_the_tokens_rotated_from_it(live_server):
    oauth, application, callback, token = _signed_in_user_token(live_server, scope=[FLEET_READ])
    rotated = oauth.refresh_token(
        f"{live_server.url}/o/token/", refresh_token=token["refresh_token"], client_id=application.client_id, timeout=10
    )
    headers = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert requests.get(f"{live_server.url}/api/v1/facilities/", headers=headers, timeout=10).status_code == 200

    _redeem_again(live_server, oauth, application, callback)

    assert requests.get(f"{live_server.url}/api/v1/facilities/", headers=headers, timeout=10).status_code == 401


def test_discovery_lists_every_documented_api_scope(live_server):
    for path in ("/o/.well-known/openid-configuration", "/o/.well-known/oauth-authorization-server"):
        document = requests.get(f"{live_server.url}{path}", timeout=10).json()
        assert set(API_SCOPES) | {"openid", "profile", "email"} <= set(document["scopes_supported"]), path


def test_the_consent_page_for_another_tenants_application_names_neither_it_nor_its_tenant(live_server):
    theirs = FacilityFactory(tenant__name="Rival Retail GmbH").tenant
    application = _pkce_app(theirs)
    application.name = "Rival Energy Dashboard"
    application.save()
    outsider = MembershipFactory()
    browser = _signed_in_browser(live_server, outsider.user)
    oauth = OAuth2Session(application.client_id, redirect_uri=REDIRECT_URI, scope=[FLEET_READ], pkce="S256")
    url, _ = oauth.authorization_url(f"{live_server.url}/o/authorize/")

    refused = browser.get(url, timeout=10)

    assert refused.status_code == 403
    assert "Rival Energy Dashboard" not in refused.text
    assert "Rival Retail" not in refused.text


def test_token_revocation_still_takes_the_token_in_the_form_body_as_rfc_7009_requires(live_server):
    application = ApplicationFactory(tenant=FacilityFactory().tenant, scope=FLEET_READ)
    session = _client_credentials_session(live_server, application)
    token = session.token["access_token"]
    revoked = requests.post(
        f"{live_server.url}/o/revoke_token/",
        data={"token": token},
        auth=(application.client_id, CLIENT_SECRET),
        timeout=10,
    )
    assert revoked.status_code == 200
    assert session.get(f"{live_server.url}/api/v1/facilities/", timeout=10).status_code == 401
