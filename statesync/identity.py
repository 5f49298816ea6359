"""Who is asking: an identity and the role it acts in, decided without I/O.

Every request and every websocket has exactly one :class:`Identity`:

- the **admin** (the admin secret, or open access): may do everything, rules do not apply;
- a **user** (a verified JWT): a user id, a role chosen among its allowed roles, and the
  claims rules may name;
- **anonymous** (no credentials): the ``anonymous_role`` and no claims.

``key`` names the identity for per-identity limits (rate, connections, subscriptions) and
for taking turns at bulk work and snapshots (statesync.fair): the user id, the role for a
token without one, the client's address for anonymous requests, ``admin`` for the admin.
Clients that share a key share its limits and its turns: everyone behind one proxy,
anonymous, is one identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statesync.errors import Forbidden

ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    role: str
    user_id: str | None = None
    allowed_roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    key: str = "anonymous"

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE

    def acting_as(self, role: str | None) -> Identity:
        """The same identity in another of its roles (a request may pick one), or Forbidden."""
        if role is None or role == self.role:
            return self
        if self.is_admin:
            # The admin may try any role's view of the data (to test rules, say).
            return Identity(role=role, user_id=self.user_id, allowed_roles=frozenset({role}),
                            claims=self.claims, expires_at=self.expires_at, key=self.key)
        if role not in self.allowed_roles:
            raise Forbidden(f"role {role!r} is not one of this identity's roles", role=role)
        return Identity(role=role, user_id=self.user_id, allowed_roles=self.allowed_roles,
                        claims=self.claims, expires_at=self.expires_at, key=self.key)

    def session_value(self, name: str) -> Any:
        """What a rule's ``session.<name>`` stands for (None when the identity has none)."""
        if name == "user_id":
            return self.user_id
        if name == "role":
            return self.role
        return self.claims.get(name)


ADMIN = Identity(role=ADMIN_ROLE, key="admin")


def anonymous(role: str, client: str | None) -> Identity:
    return Identity(role=role, allowed_roles=frozenset({role}), key=f"anonymous:{client or '?'}")
