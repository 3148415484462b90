"""The consumer app's shell: the built index at /app/, and its service worker and manifest beside it.

Vite builds `app/` into `consumer/static/app/` (see the Makefile's `app` target). The service worker
is served from /app/ rather than /static/, so that its scope is the app; the page carries no user
data, so every user gets the same shell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.staticfiles import finders
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe
from rest_framework.throttling import SimpleRateThrottle

from consumer import services
from consumer.forms import SignUpForm
from integrations.scopes import CONSUMER_APP_CLIENT_ID

BUILT = {
    "index": ("app/index.html", "text/html; charset=utf-8"),
    "sw": ("app/sw.js", "text/javascript; charset=utf-8"),
    "manifest": ("app/manifest.webmanifest", "application/manifest+json"),
}


def _built(name: str) -> tuple[str, str]:
    relative, content_type = BUILT[name]
    found = finders.find(relative)
    if not found:
        raise Http404("The app is not built: run `make app`.")
    return Path(str(found)).read_text(encoding="utf-8"), content_type


@require_safe
@never_cache
def shell(request: HttpRequest) -> HttpResponse:
    text, content_type = _built("index")
    # The client id is public (a PKCE client); the page reads it from here rather than hard-coding it.
    text = text.replace("%ENERGYBOX_CLIENT_ID%", CONSUMER_APP_CLIENT_ID)
    return HttpResponse(text, content_type=content_type)


@require_safe
@never_cache
def service_worker(request: HttpRequest) -> HttpResponse:
    text, content_type = _built("sw")
    response = HttpResponse(text, content_type=content_type)
    response["Service-Worker-Allowed"] = "/app/"
    return response


@require_safe
def manifest(request: HttpRequest) -> HttpResponse:
    text, content_type = _built("manifest")
    return HttpResponse(text, content_type=content_type)


class SignUpThrottle(SimpleRateThrottle):
    """Sign-up attempts per IP address (`SIGNUP_RATE`), counted in the shared cache like the API's."""

    scope = "signup"

    def get_rate(self) -> str | None:
        return str(settings.SIGNUP_RATE) or None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


@require_http_methods(["GET", "HEAD", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    """The public sign-up page of households: on success the user is signed in and sent to the app."""
    form = SignUpForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not SignUpThrottle().allow_request(request, None):  # type: ignore[arg-type]
            form.add_error(None, _("Too many sign-ups from your network; try again in an hour."))
            status = 429
        elif form.is_valid():
            try:
                user = services.household_sign_up(
                    **form.cleaned_data,
                    verify_url=lambda token: request.build_absolute_uri(reverse("accounts:email_verify", args=[token])),
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return render(request, "consumer/signed_up.html", {"email": user.email})
        if status == 200 and form.errors:
            status = 400
    return render(request, "consumer/sign_up.html", {"form": form}, status=status)
