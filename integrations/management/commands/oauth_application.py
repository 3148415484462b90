"""Register an OAuth application from the command line (the portal's Integrations page does the same).

manage.py oauth_application --tenant acme --name "ERP link" --scopes fleet:read readings:read
manage.py oauth_application --platform --name "Portal SSO" --redirect-uri https://portal.example/login/sso/callback/
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Tenant
from accounts.selectors import access_for_tenant
from integrations.models import Application
from integrations.scopes import API_SCOPES
from integrations.services import application_register, platform_application_register


class Command(BaseCommand):
    help = "Register an OAuth 2.0 application for a tenant (or a platform sign-on client); print its credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--tenant", help="Slug of the tenant the application belongs to.")
        owner.add_argument(
            "--platform", action="store_true", help="A first-party single sign-on client (no tenant, no API access)."
        )
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", nargs="+", default=[], choices=list(API_SCOPES), metavar="SCOPE")
        parser.add_argument(
            "--grant",
            choices=[Application.GRANT_CLIENT_CREDENTIALS, Application.GRANT_AUTHORIZATION_CODE],
            default=Application.GRANT_CLIENT_CREDENTIALS,
        )
        parser.add_argument(
            "--public", action="store_true", help="A public client (no secret): mobile or browser apps."
        )
        parser.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")

    def handle(self, *args: Any, **options: Any) -> None:
        client_type = Application.CLIENT_PUBLIC if options["public"] else Application.CLIENT_CONFIDENTIAL
        try:
            if options["platform"]:
                registered = platform_application_register(
                    name=options["name"], redirect_uris=" ".join(options["redirect_uris"]), client_type=client_type
                )
            else:
                tenant = Tenant.objects.filter(slug=options["tenant"]).first()
                if tenant is None:
                    raise CommandError(f"No tenant with the slug {options['tenant']!r}.")
                registered = application_register(
                    access=access_for_tenant(tenant=tenant),
                    name=options["name"],
                    grant_type=options["grant"],
                    scopes=options["scopes"],
                    redirect_uris=" ".join(options["redirect_uris"]),
                    client_type=client_type,
                )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        app = registered.application
        self.stdout.write(f"client_id={app.client_id}")
        if client_type == Application.CLIENT_CONFIDENTIAL:
            self.stdout.write(f"client_secret={registered.client_secret}")
        self.stdout.write(f"scopes={app.scope or '(none: sign-in only)'}")
