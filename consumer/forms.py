from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from consumer.services import MAX_EMAIL_LENGTH, MAX_NAME_LENGTH


class SignUpForm(forms.Form):
    """Only the field limits the browser should know; the service judges the input."""

    email = forms.CharField(label=_("E-mail address"), max_length=MAX_EMAIL_LENGTH, widget=forms.EmailInput)
    password = forms.CharField(label=_("Password"), max_length=128, widget=forms.PasswordInput)
    household_name = forms.CharField(label=_("Name of your household"), max_length=MAX_NAME_LENGTH)
    timezone = forms.CharField(label=_("Time zone"), max_length=64, initial="Europe/Berlin")
