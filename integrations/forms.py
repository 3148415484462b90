from __future__ import annotations

from django import forms

from integrations.models import Application
from integrations.scopes import API_SCOPES


class ApplicationForm(forms.Form):
    name = forms.CharField(max_length=255)
    grant_type = forms.ChoiceField(
        choices=[
            (Application.GRANT_CLIENT_CREDENTIALS, "Client credentials (a server acting for the whole tenant)"),
            (Application.GRANT_AUTHORIZATION_CODE, "Authorization code + PKCE (an app acting for a signed-in user)"),
        ],
        widget=forms.RadioSelect,
        initial=Application.GRANT_CLIENT_CREDENTIALS,
    )
    client_type = forms.ChoiceField(
        choices=[
            (Application.CLIENT_CONFIDENTIAL, "Confidential (keeps a secret: a server)"),
            (Application.CLIENT_PUBLIC, "Public (cannot keep a secret: a mobile or browser app)"),
        ],
        initial=Application.CLIENT_CONFIDENTIAL,
    )
    redirect_uris = forms.CharField(
        label="Redirect URIs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Authorization code only: the exact callback URLs, separated by spaces or new lines.",
    )
    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope}: {label}") for scope, label in API_SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
    )
