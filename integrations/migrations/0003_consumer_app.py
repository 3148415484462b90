"""The consumer app's OAuth client: public (PKCE), no tenant, read scopes, approved by the platform.

Loopback redirect URIs match any port (RFC 8252 §7.3), so `make run` and the tests work as they are;
a deployment adds its own host's `https://<host>/app/` in the Django admin (or ENERGYBOX_APP_REDIRECT_URIS).
"""

from __future__ import annotations

import os

from django.db import migrations

CLIENT_ID = "energybox-app"
SCOPES = "fleet:read readings:read billing:read"
LOOPBACK = "http://127.0.0.1/app/ http://[::1]/app/"


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    Application = apps.get_model("integrations", "Application")
    extra = os.environ.get("ENERGYBOX_APP_REDIRECT_URIS", "")
    Application.objects.get_or_create(
        client_id=CLIENT_ID,
        defaults={
            "name": "Energybox app",
            "tenant": None,
            "client_type": "public",
            "authorization_grant_type": "authorization-code",
            "client_secret": "",
            "redirect_uris": " ".join((LOOPBACK + " " + extra).split()),
            "post_logout_redirect_uris": " ".join((LOOPBACK + " " + extra).split()),
            "scope": SCOPES,
            "algorithm": "RS256",
            "skip_authorization": True,
        },
    )


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("integrations", "Application").objects.filter(client_id=CLIENT_ID).delete()


class Migration(migrations.Migration):
    dependencies = [("integrations", "0002_redeemed_code")]

    operations = [migrations.RunPython(create, remove)]
