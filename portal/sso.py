"""Portal sign-in through OpenID Connect (authorization code + PKCE) against the platform's provider.

With ENERGYBOX_SSO_ISSUER set (e.g. https://id.example.com/o), the login page offers "Sign in with
single sign-on": a user already signed in at the provider (or at any other app using it) comes back
signed in without typing a password. The provider's `sub` is the platform's user id, so the portal,
the consumer app and the provider must share the user table (one platform, several hosts).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient
from requests_oauthlib import OAuth2Session

from accounts.models import User

SESSION_KEY = "energybox_sso"
SCOPES = ["openid", "profile", "email"]
DISCOVERY_TTL_S = 300
_discovery_cache: dict[str, tuple[float, dict[str, Any]]] = {}


class SsoError(Exception):
    pass


def sso_enabled() -> bool:
    return bool(settings.ENERGYBOX_SSO_ISSUER and settings.ENERGYBOX_SSO_CLIENT_ID)


def _discovery() -> dict[str, Any]:
    issuer = settings.ENERGYBOX_SSO_ISSUER.rstrip("/")
    cached = _discovery_cache.get(issuer)
    if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
        return cached[1]
    try:
        document = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
    except (requests.RequestException, ValueError) as exc:
        raise SsoError(f"the identity provider at {issuer} cannot be reached") from exc
    _discovery_cache[issuer] = (time.monotonic(), document)
    return document


def _callback_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("portal:sso_callback"))


class PortalLoginView(LoginView):
    template_name = "portal/login.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "sso_enabled": sso_enabled()}


def _failed(request: HttpRequest, reason: str, status: int = 400) -> HttpResponse:
    return render(request, "portal/login.html", {"sso_enabled": sso_enabled(), "sso_error": reason}, status=status)


def sso_start(request: HttpRequest) -> HttpResponse:
    if not sso_enabled():
        raise Http404
    try:
        document = _discovery()
    except SsoError as exc:
        return _failed(request, f"Single sign-on is unavailable: {exc}.", status=502)
    client = WebApplicationClient(settings.ENERGYBOX_SSO_CLIENT_ID)
    verifier = client.create_code_verifier(64)
    nonce = secrets.token_urlsafe(24)
    oauth = OAuth2Session(client=client, redirect_uri=_callback_url(request), scope=SCOPES)
    url, state = oauth.authorization_url(
        document["authorization_endpoint"],
        code_challenge=client.create_code_challenge(verifier, "S256"),
        code_challenge_method="S256",
        nonce=nonce,
    )
    next_url = request.GET.get("next", "")
    request.session[SESSION_KEY] = {"state": state, "verifier": verifier, "nonce": nonce, "next": next_url}
    return redirect(url)


def _verified_claims(document: dict[str, Any], id_token: str, nonce: str) -> dict[str, Any]:
    try:
        keys = jwk.JWKSet.from_json(requests.get(document["jwks_uri"], timeout=5).text)
        token = jwt.JWT(
            jwt=id_token,
            key=keys,
            algs=["RS256"],
            expected_type="JWS",
            check_claims={
                "iss": document["issuer"],
                "aud": settings.ENERGYBOX_SSO_CLIENT_ID,
                "exp": None,
                "nonce": nonce,
            },
        )
    except (requests.RequestException, ValueError, JWException) as exc:
        raise SsoError(f"the ID token is not valid ({type(exc).__name__})") from exc
    return dict(json.loads(token.claims))


def sso_callback(request: HttpRequest) -> HttpResponse:
    if not sso_enabled():
        raise Http404
    pending = request.session.pop(SESSION_KEY, None)
    if not pending or request.GET.get("state") != pending["state"]:
        return _failed(request, "Single sign-on failed: this answer does not match a sign-in started here.")
    if "error" in request.GET:
        return _failed(
            request, f"Single sign-on was refused: {request.GET.get('error_description') or request.GET['error']}."
        )
    try:
        document = _discovery()
        oauth = OAuth2Session(
            settings.ENERGYBOX_SSO_CLIENT_ID, redirect_uri=_callback_url(request), state=pending["state"]
        )
        token = oauth.fetch_token(
            document["token_endpoint"],
            code=request.GET.get("code", ""),
            client_secret=settings.ENERGYBOX_SSO_CLIENT_SECRET or None,
            include_client_id=True,
            code_verifier=pending["verifier"],
            timeout=10,
        )
        claims = _verified_claims(document, token.get("id_token", ""), pending["nonce"])
    except (SsoError, OAuth2Error, requests.RequestException, ValueError) as exc:
        return _failed(request, f"Single sign-on failed: {exc}.", status=502)
    user = User.objects.filter(
        pk=int(claims["sub"]) if str(claims.get("sub", "")).isdigit() else -1, is_active=True
    ).first()
    if user is None:
        return _failed(request, "Single sign-on failed: this account does not exist here or is disabled.", status=403)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    next_url = pending.get("next") or ""
    if next_url and url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        return redirect(next_url)
    return redirect(settings.LOGIN_REDIRECT_URL)
