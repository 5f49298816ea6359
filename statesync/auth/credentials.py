"""Who a request or a websocket is, from what it presents.

HTTP: ``X-Statesync-Admin-Secret`` (or Hasura's ``X-Hasura-Admin-Secret``) for the admin,
``Authorization: Bearer <jwt>`` for a user, nothing for anonymous; ``X-Statesync-Role``
(or ``X-Hasura-Role``) picks one of the identity's roles. A websocket presents the same
in its ``connection_init`` payload, either as ``{"headers": {...}}`` (Apollo's and
Hasura's shape) or at its top level (``{"authorization": "Bearer ..."}``), else in its
upgrade request's headers.

A JWT's claims map to the identity as Hasura's do, by default: the claims under
``jwt_claims_namespace``, the user id in ``jwt_user_id_claim`` (else ``sub``), the roles
in ``jwt_default_role_claim`` and ``jwt_allowed_roles_claim``. Every claim in the
namespace is a session value a rule may name.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from statesync.auth.tokens import TokenVerifier
from statesync.config import Settings
from statesync.errors import Unauthenticated
from statesync.identity import ADMIN, Identity, anonymous

ADMIN_SECRET_HEADERS = ("x-statesync-admin-secret", "x-hasura-admin-secret")
ROLE_HEADERS = ("x-statesync-role", "x-hasura-role")


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = TokenVerifier(settings)

    @property
    def configured(self) -> bool:
        return bool(self.settings.admin_secret) or self.tokens.configured

    async def identify(self, headers: Mapping[str, str], client: str | None) -> Identity:
        """The identity of a request with these (lower-cased) headers."""
        role = _first(headers, ROLE_HEADERS)
        secret = _first(headers, ADMIN_SECRET_HEADERS)
        if secret is not None:
            expected = self.settings.admin_secret
            if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
                raise Unauthenticated("the admin secret is wrong", reason="admin_secret")
            return ADMIN.acting_as(role)
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("Authorization must be `Bearer <token>`", reason="scheme")
            return self.user(await self.tokens.verify(token.strip())).acting_as(role)
        if self.settings.open_access:
            return ADMIN.acting_as(role)
        return anonymous(self.settings.anonymous_role, client).acting_as(role)

    async def identify_socket(self, payload: Mapping[str, Any] | None, upgrade: Mapping[str, str],
                              client: str | None) -> Identity:
        """A websocket's identity: its connection_init payload, else its upgrade headers."""
        presented = _payload_headers(payload or {})
        return await self.identify(presented if _credentials(presented) else
                                   {**upgrade, **presented}, client)

    def user(self, claims: Mapping[str, Any]) -> Identity:
        s = self.settings
        namespace = claims.get(s.jwt_claims_namespace) if s.jwt_claims_namespace else claims
        if not isinstance(namespace, Mapping):
            raise Unauthenticated(f"the token has no {s.jwt_claims_namespace!r} claims", reason="claims")
        user_id = namespace.get(s.jwt_user_id_claim, claims.get("sub"))
        allowed = namespace.get(s.jwt_allowed_roles_claim, [])
        default = namespace.get(s.jwt_default_role_claim)
        if not isinstance(allowed, list) or not all(isinstance(r, str) for r in allowed):
            raise Unauthenticated(f"{s.jwt_allowed_roles_claim} must be a list of roles", reason="claims")
        if not isinstance(default, str) or (allowed and default not in allowed):
            raise Unauthenticated(f"{s.jwt_default_role_claim} must be one of the allowed roles",
                                  reason="claims")
        if user_id is not None and not isinstance(user_id, str):
            user_id = str(user_id)
        exp = claims.get("exp")
        return Identity(
            role=default, user_id=user_id, allowed_roles=frozenset(allowed) | {default},
            claims={k: v for k, v in namespace.items() if isinstance(k, str)},
            expires_at=datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None,
            key=f"user:{user_id}" if user_id else f"role:{default}",
        )


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def _payload_headers(payload: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    nested = payload.get("headers")
    for source in (payload, nested if isinstance(nested, Mapping) else {}):
        for key, value in source.items():
            if isinstance(key, str) and isinstance(value, str):
                found[key.lower()] = value
    if "adminsecret" in found:  # a JS-style key
        found.setdefault("x-statesync-admin-secret", found["adminsecret"])
    if "token" in found:
        found.setdefault("authorization", f"Bearer {found['token']}")
    if "role" in found:
        found.setdefault("x-statesync-role", found["role"])
    return found


def _credentials(headers: Mapping[str, str]) -> bool:
    return any(name in headers for name in (*ADMIN_SECRET_HEADERS, "authorization"))
