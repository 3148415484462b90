"""Who may see what. Every selector takes an `Access`, so a tenant filter cannot be forgotten."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Role


@dataclass(frozen=True, slots=True)
class Access:
    tenant_id: int
    role: Role
    # None means every facility of the tenant; a facility manager gets the granted set.
    facility_ids: frozenset[int] | None
    user_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def sees_facility(self, facility_id: int) -> bool:
        return self.facility_ids is None or facility_id in self.facility_ids

    def manages_facility(self, facility_id: int) -> bool:
        if self.role == Role.ADMIN:
            return True
        return self.role == Role.FACILITY_MANAGER and self.sees_facility(facility_id)
