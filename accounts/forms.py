from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Role


class RoleFields(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.VIEWER)
    facilities = forms.TypedMultipleChoiceField(
        label=_("Facilities (facility managers)"), coerce=int, required=False, choices=()
    )

    def __init__(self, *args: Any, facilities: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["facilities"].choices = [(f.pk, f.name) for f in facilities]  # type: ignore[attr-defined]


class InvitationForm(RoleFields):
    email = forms.EmailField(label=_("E-mail"))

    field_order = ["email", "role", "facilities"]


class AcceptForm(forms.Form):
    username = forms.CharField(label=_("User name"), max_length=150)
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
