"""Development credentials: `statesync dev` runs with a generated admin secret and JWT
secret (kept in its data folder, so they survive restarts), and mints tokens for any user
on request. Never in `statesync serve` unless ``dev_tokens`` is set."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from statesync.config import Settings

DEV_TOKEN_LIFETIME = timedelta(hours=12)


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """The data folder's admin and JWT secrets, made on first use."""
    path = data_dir / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    made = {"admin_secret": secrets.token_urlsafe(24), "jwt_secret": secrets.token_urlsafe(32)}
    path.write_text(json.dumps(made))
    path.chmod(0o600)
    return made


def mint(settings: Settings, user: str, role: str, roles: list[str] | None = None,
         lifetime: timedelta = DEV_TOKEN_LIFETIME) -> str:
    """An HS256 token for ``user`` acting as ``role``, in the configured claim shape."""
    if not settings.jwt_secret:
        raise RuntimeError("minting needs STATESYNC_JWT_SECRET")
    now = datetime.now(UTC)
    claims = {settings.jwt_user_id_claim: user, settings.jwt_default_role_claim: role,
              settings.jwt_allowed_roles_claim: sorted({role, *(roles or [])})}
    body: dict[str, object] = {"sub": user, "iat": now, "exp": now + lifetime}
    if settings.jwt_claims_namespace:
        body[settings.jwt_claims_namespace] = claims
    else:
        body.update(claims)
    if settings.jwt_issuer:
        body["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        body["aud"] = settings.jwt_audience
    return jwt.encode(body, settings.jwt_secret, algorithm="HS256")
