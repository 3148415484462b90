"""The billing domain's error. Interfaces map it to an HTTP status in one place (integrations/api/errors.py)."""

from __future__ import annotations


class BillingError(Exception):
    """A bill that cannot be made: a future month, no contract, mixed currencies, ..."""
