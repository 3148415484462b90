from __future__ import annotations


class ClaimRateLimited(Exception):
    """Too many failed claims: claim codes must not be guessable by trying."""
