"""The consumer app's shell: the built index at /app/, and its service worker and manifest beside it.

Vite builds `app/` into `consumer/static/app/` (see the Makefile's `app` target). The service worker
is served from /app/ rather than /static/, so that its scope is the app; the page carries no user
data, so every user gets the same shell.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

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
