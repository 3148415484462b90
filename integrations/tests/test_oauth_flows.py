"""Real OAuth 2.0 clients (requests-oauthlib) against a live server: the flows integrators use."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from jwcrypto import jwk, jwt
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from accounts.models import Role
from accounts.tests.factories import USER_PASSWORD, MembershipFactory, UserFactory
from devices.tests.factories import FacilityFactory
from integrations.models import Application
from integrations.scopes import FLEET_READ, READINGS_READ
from integrations.tests.factories import CLIENT_SECRET, ApplicationFactory

pytestmark = pytest.mark.django_db(transaction=True)

REDIRECT_URI = "http://client.example/callback"


@pytest.fixture(autouse=True)
def _plain_http_for_the_test_server(monkeypatch):
    # The live test server speaks plain HTTP; oauthlib insists on TLS unless told otherwise.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def _client_credentials_session(live_server, application, scope=None) -> OAuth2Session:
    session = OAuth2Session(client=BackendApplicationClient(client_id=application.client_id), scope=scope)
    session.fetch_token(
        f"{live_server.url}/o/token/", client_id=application.client_id, client_secret=CLIENT_SECRET, timeout=10
    )
    return session


def test_the_client_credentials_flow_gets_a_token_that_reads_its_own_tenant_only(live_server):
    mine = FacilityFactory(name="Mine")
    FacilityFactory(name="Theirs")
    application = ApplicationFactory(tenant=mine.tenant, scope=f"{FLEET_READ} {READINGS_READ}")

    session = _client_credentials_session(live_server, application)

    assert set(session.token["scope"]) == {FLEET_READ, READINGS_READ}
    response = session.get(f"{live_server.url}/api/v1/facilities/", timeout=10)
    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["Mine"]


def test_a_client_cannot_obtain_a_scope_it_was_not_registered_for(live_server):
    application = ApplicationFactory(scope=FLEET_READ)
    answer = requests.post(
        f"{live_server.url}/o/token/",
        data={"grant_type": "client_credentials", "scope": "fleet:write"},
        auth=(application.client_id, CLIENT_SECRET),
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope"


def test_a_wrong_client_secret_gets_no_token(live_server):
    application = ApplicationFactory()
    session = OAuth2Session(client=BackendApplicationClient(client_id=application.client_id))
    with pytest.raises(Exception, match="invalid_client"):
        session.fetch_token(
            f"{live_server.url}/o/token/", client_id=application.client_id, client_secret="wrong", timeout=10
        )


def test_a_revoked_token_stops_working_and_introspection_reports_it(live_server):
    application = ApplicationFactory(scope=FLEET_READ)
    session = _client_credentials_session(live_server, application)
    token = session.token["access_token"]
    auth = (application.client_id, CLIENT_SECRET)

    active = requests.post(f"{live_server.url}/o/introspect/", data={"token": token}, auth=auth, timeout=10).json()
    assert active["active"] is True and active["scope"] == FLEET_READ

    revoked = requests.post(f"{live_server.url}/o/revoke_token/", data={"token": token}, auth=auth, timeout=10)
    assert revoked.status_code == 200
    assert session.get(f"{live_server.url}/api/v1/facilities/", timeout=10).status_code == 401
    after = requests.post(f"{live_server.url}/o/introspect/", data={"token": token}, auth=auth, timeout=10).json()
    assert after == {"active": False}


def test_introspection_never_describes_another_tenants_token(live_server):
    theirs = ApplicationFactory()
    their_token = _client_credentials_session(live_server, theirs).token["access_token"]
    mine = ApplicationFactory()
    answer = requests.post(
        f"{live_server.url}/o/introspect/",
        data={"token": their_token},
        auth=(mine.client_id, CLIENT_SECRET),
        timeout=10,
    )
    assert answer.json() == {"active": False}
    unauthenticated = requests.post(f"{live_server.url}/o/introspect/", data={"token": their_token}, timeout=10)
    assert unauthenticated.status_code == 401


def _signed_in_browser(live_server, user) -> requests.Session:
    browser = requests.Session()
    browser.get(f"{live_server.url}/login/", timeout=10)
    response = browser.post(
        f"{live_server.url}/login/",
        data={
            "username": user.username,
            "password": USER_PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": f"{live_server.url}/login/"},
        timeout=10,
    )
    assert "sessionid" in browser.cookies, response.status_code
    return browser


def _authorize(live_server, browser: requests.Session, url: str) -> requests.Response:
    """The user approves on the consent page: a form whose hidden fields carry the request."""
    page = browser.get(url, timeout=10)
    if page.status_code != 200:
        return page
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" (?:[^>]*?)value="([^"]*)"', page.text))
    fields["allow"] = "Authorize"
    fields["csrfmiddlewaretoken"] = browser.cookies["csrftoken"]
    return browser.post(page.url, data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10)


def _pkce_app(tenant) -> Application:
    return ApplicationFactory(
        tenant=tenant,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        client_type=Application.CLIENT_PUBLIC,
        redirect_uris=REDIRECT_URI,
        algorithm=Application.RS256_ALGORITHM,
        scope=FLEET_READ,
    )


def test_the_authorization_code_flow_with_pkce_signs_a_user_in_and_limits_them_to_their_role(live_server):
    granted = FacilityFactory(name="Granted")
    FacilityFactory(tenant=granted.tenant, name="Not granted")
    membership = MembershipFactory(tenant=granted.tenant, role=Role.FACILITY_MANAGER, facilities=[granted])
    application = _pkce_app(granted.tenant)
    browser = _signed_in_browser(live_server, membership.user)

    oauth = OAuth2Session(
        application.client_id, redirect_uri=REDIRECT_URI, scope=["openid", "profile", FLEET_READ], pkce="S256"
    )
    url, state = oauth.authorization_url(f"{live_server.url}/o/authorize/")
    assert "code_challenge=" in url and "code_challenge_method=S256" in url
    approved = _authorize(live_server, browser, url)
    assert approved.status_code == 302, approved.text[:500]
    callback = approved.headers["Location"]
    assert callback.startswith(REDIRECT_URI) and parse_qs(urlparse(callback).query)["state"] == [state]

    token = oauth.fetch_token(
        f"{live_server.url}/o/token/", authorization_response=callback, include_client_id=True, timeout=10
    )

    # A replayed code is refused and revokes these tokens: test_oauth_hardening.py.
    # The API: the user's own role narrows the token, a facility manager sees the granted facility only.
    names = [row["name"] for row in oauth.get(f"{live_server.url}/api/v1/facilities/", timeout=10).json()["results"]]
    assert names == ["Granted"]

    # OIDC: an RS256 ID token signed by the published key, and the userinfo endpoint.
    discovery = requests.get(f"{live_server.url}/o/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"].startswith(live_server.url)
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    keys = jwk.JWKSet.from_json(requests.get(discovery["jwks_uri"], timeout=10).text)
    id_token = jwt.JWT(jwt=token["id_token"], key=keys, algs=["RS256"], expected_type="JWS")
    claims = id_token.token.objects["payload"]
    assert b'"sub":"%d"' % membership.user.pk in claims.replace(b" ", b"")
    userinfo = oauth.get(discovery["userinfo_endpoint"], timeout=10).json()
    assert userinfo["sub"] == str(membership.user.pk)
    assert userinfo["preferred_username"] == membership.user.username

    # Refresh: a new access token; the used refresh token cannot be replayed.
    refreshed = oauth.refresh_token(
        f"{live_server.url}/o/token/", refresh_token=token["refresh_token"], client_id=application.client_id, timeout=10
    )
    assert refreshed["access_token"] != token["access_token"]
    replay = requests.post(
        f"{live_server.url}/o/token/",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": application.client_id,
        },
        timeout=10,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_the_authorization_code_flow_refuses_a_request_without_pkce(live_server):
    membership = MembershipFactory()
    application = _pkce_app(membership.tenant)
    browser = _signed_in_browser(live_server, membership.user)
    oauth = OAuth2Session(application.client_id, redirect_uri=REDIRECT_URI, scope=[FLEET_READ])
    url, _ = oauth.authorization_url(f"{live_server.url}/o/authorize/")
    answer = browser.get(url, allow_redirects=False, timeout=10)
    location = answer.headers.get("Location", "")
    assert "error=invalid_request" in location or answer.status_code == 400


def test_a_code_redeemed_with_the_wrong_pkce_verifier_is_refused(live_server):
    membership = MembershipFactory()
    application = _pkce_app(membership.tenant)
    browser = _signed_in_browser(live_server, membership.user)
    oauth = OAuth2Session(application.client_id, redirect_uri=REDIRECT_URI, scope=[FLEET_READ], pkce="S256")
    url, _ = oauth.authorization_url(f"{live_server.url}/o/authorize/")
    callback = _authorize(live_server, browser, url).headers["Location"]
    stolen = requests.post(
        f"{live_server.url}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": parse_qs(urlparse(callback).query)["code"][0],
            "redirect_uri": REDIRECT_URI,
            "client_id": application.client_id,
            "code_verifier": "a" * 64,
        },
        timeout=10,
    )
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


def test_a_user_outside_the_applications_tenant_cannot_authorize_it(live_server):
    application = _pkce_app(FacilityFactory().tenant)
    outsider = MembershipFactory()  # a member of another tenant
    browser = _signed_in_browser(live_server, outsider.user)
    oauth = OAuth2Session(application.client_id, redirect_uri=REDIRECT_URI, scope=[FLEET_READ], pkce="S256")
    url, _ = oauth.authorization_url(f"{live_server.url}/o/authorize/")
    refused = _authorize(live_server, browser, url)
    assert refused.status_code == 403
    assert "not a member" in refused.text


def test_a_user_without_any_membership_is_not_a_member_either(live_server):
    application = _pkce_app(FacilityFactory().tenant)
    browser = _signed_in_browser(live_server, UserFactory())
    oauth = OAuth2Session(application.client_id, redirect_uri=REDIRECT_URI, scope=[FLEET_READ], pkce="S256")
    url, _ = oauth.authorization_url(f"{live_server.url}/o/authorize/")
    assert browser.get(url, timeout=10).status_code == 403
