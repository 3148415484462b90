"""The alerts domain's error. Interfaces map it to an HTTP status in one place (integrations/api/errors.py)."""

from __future__ import annotations


class AlertsError(Exception):
    """A rule, recipient or webhook that cannot be stored, or an alert that cannot change state."""
