from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class User(AbstractUser):
    """The platform's user. Custom from day one so fields can be added without pain."""

    email = models.EmailField("email address", blank=True)
    # The portal's language for this user (one of settings.LANGUAGES); blank follows the browser.
    language = models.CharField(max_length=8, blank=True, default="")
    # The address the user proved they read (a verification or invitation link sent to it). The OIDC
    # `email_verified` claim holds while it is still `email`: a changed address is unverified again.
    verified_email = models.EmailField(blank=True, default="")

    class Meta:
        db_table = "accounts_user"

    @property
    def email_verified(self) -> bool:
        return bool(self.email) and self.verified_email.lower() == self.email.lower()


class Tenant(models.Model):
    class Kind(models.TextChoices):
        ENTERPRISE = "enterprise", "Enterprise (facility park)"
        CONSUMER = "consumer", "Consumer (household)"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    raw_retention_days = models.PositiveIntegerField(
        default=400,
        validators=[MinValueValidator(1), MaxValueValidator(36500)],
        help_text="Raw 2-second readings are kept this many days; rollups are kept for ever.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Tenant admin"
    FACILITY_MANAGER = "facility_manager", "Facility manager"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    """A user's role in one tenant. A facility manager sees only the facilities granted."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=24, choices=Role.choices, default=Role.VIEWER)
    facilities = models.ManyToManyField(
        "devices.Facility",
        blank=True,
        related_name="granted_memberships",
        help_text="Only for facility managers: the facilities they may see and manage.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")]
        ordering = ["tenant__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.get_role_display()})"

    # A form sets the grants it is about to save, since many-to-many rows are written after the row.
    pending_facilities: Iterable[Any] | None = None

    def clean(self) -> None:
        """A grant can only name facilities of the membership's own tenant."""
        if self.tenant_id is None:
            return
        facilities = self.pending_facilities
        if facilities is None:
            facilities = self.facilities.all() if self.pk is not None else []
        if any(facility.tenant_id != self.tenant_id for facility in facilities):
            raise ValidationError({"facilities": "A membership can only grant facilities of its own tenant."})

    def get_additional_data(self) -> dict[str, int]:
        """Stored with each audit-log entry (django-auditlog), so a tenant's log is one filter away."""
        return {"tenant_id": self.tenant_id}


class Invitation(models.Model):
    """A pending invitation to a tenant. Only a hash of the link's token is stored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=24, choices=Role.choices, default=Role.VIEWER)
    facilities = models.ManyToManyField("devices.Facility", blank=True, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=models.Q(accepted_at__isnull=True),
                name="invitation_one_open_per_email_and_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.tenant}"

    def get_additional_data(self) -> dict[str, int]:
        return {"tenant_id": self.tenant_id}
