"""The OAuth scopes of the integrator API. No Django import: settings read these names."""

from __future__ import annotations

FLEET_READ = "fleet:read"
FLEET_WRITE = "fleet:write"
READINGS_READ = "readings:read"
FIRMWARE_READ = "firmware:read"
FIRMWARE_WRITE = "firmware:write"
BILLING_READ = "billing:read"
USERS_READ = "users:read"
USERS_WRITE = "users:write"
BILLING_WRITE = "billing:write"
ALERTS_READ = "alerts:read"
ALERTS_WRITE = "alerts:write"

API_SCOPES: dict[str, str] = {
    FLEET_READ: "Read facilities, devices, device groups, channels and loads",
    FLEET_WRITE: "Create and change facilities, devices, device groups, channels and loads",
    READINGS_READ: "Read measured values: series, latest values and CSV exports",
    FIRMWARE_READ: "Read firmware images and rollouts",
    FIRMWARE_WRITE: "Upload firmware and start, pause or cancel rollouts",
    BILLING_READ: "Read bills and tariffs",
    USERS_READ: "Read the tenant's members and open invitations",
    USERS_WRITE: "Invite users, change their roles and remove them",
    BILLING_WRITE: "Create and change tariffs and assign them to facilities",
    ALERTS_READ: "Read device events, alerts, alert rules and webhooks",
    ALERTS_WRITE: "Acknowledge alerts, and create and change alert rules and webhooks",
}

# OpenID Connect: only for applications that sign users in (authorization code).
OIDC_SCOPES: dict[str, str] = {
    "openid": "Sign you in (your user id)",
    "profile": "Your name and user name",
    "email": "Your e-mail address",
}

ALL_SCOPES: dict[str, str] = {**API_SCOPES, **OIDC_SCOPES}

# The consumer app (/app/): a public platform client, ensured after every migrate, that acts for its
# signed-in household in the household's own tenant. It writes only to claim the meter (fleet:write).
CONSUMER_APP_CLIENT_ID = "energybox-app"
CONSUMER_APP_SCOPES = (FLEET_READ, FLEET_WRITE, READINGS_READ, BILLING_READ, BILLING_WRITE)


def parse_scopes(raw: str) -> list[str]:
    return [scope for scope in raw.split() if scope]
