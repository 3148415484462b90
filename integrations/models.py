from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication

from accounts.models import Membership, Tenant
from integrations.scopes import API_SCOPES, parse_scopes


class Application(AbstractApplication):
    """An OAuth client. It belongs to one tenant, and so does every token issued to it.

    A platform application (no tenant) is a first-party single sign-on client, such as the
    portal or the consumer app: it can sign users in through OIDC but can never call the API.
    """

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="oauth_applications",
        help_text="Empty only for the platform's own single sign-on clients, which cannot call the API.",
    )
    scope = models.CharField(
        max_length=255,
        blank=True,
        help_text="Space-separated API scopes the application may request, e.g. 'fleet:read readings:read'.",
    )

    class Meta(AbstractApplication.Meta):
        indexes = [models.Index(fields=["tenant", "created"])]

    def clean(self) -> None:
        super().clean()
        unknown = [scope for scope in parse_scopes(self.scope) if scope not in API_SCOPES]
        if unknown:
            raise ValidationError({"scope": f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(API_SCOPES)}."})
        if self.tenant_id is not None and self.user_id is not None:
            if not Membership.objects.filter(tenant_id=self.tenant_id, user_id=self.user_id).exists():
                raise ValidationError({"user": "The owner must be a member of the application's tenant."})


class RedeemedCode(models.Model):
    """An authorization code that was exchanged, and what it was exchanged for.

    django-oauth-toolkit deletes a grant once used, so a replayed code would only be refused. RFC
    6749 §4.1.2 asks that the tokens issued from it be revoked too: this row remembers them. Only
    checksums are kept, never a usable code or token.
    """

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    code_checksum = models.CharField(max_length=64)
    access_token_checksum = models.CharField(max_length=64)
    token_family = models.UUIDField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "code_checksum"], name="redeemedcode_unique_code")
        ]
        indexes = [models.Index(fields=["created"])]

    def __str__(self) -> str:
        return f"code {self.code_checksum[:8]} of application {self.application_id}"
