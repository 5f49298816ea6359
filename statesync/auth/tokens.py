"""Verifying JWTs with PyJWT: HS256 with a shared secret, or RS256/ES256 keys from a JWKS URL.

JWKS keys are fetched on first use, kept ``jwks_refresh_interval`` seconds, and fetched
again when a token names a ``kid`` not among them (a rotation), but never more than once
a second (such a token waits for its turn), so tokens with made-up ``kid``s cannot make
the server hammer the key server. A verified token is kept (10,000 at most) so its
signature is checked once, not on every request; its time window is checked on every
use, and a key that leaves the key set takes the tokens it signed with it.

``exp`` is required; ``exp`` and ``nbf`` are checked with ``jwt_leeway`` seconds of skew,
and ``iss`` and ``aud`` when configured. ``alg: none`` and any algorithm not configured
are refused.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import httpx
import jwt

from statesync.config import Settings, listed
from statesync.errors import Unauthenticated

JWKS_MIN_REFETCH = 1.0  # seconds between two fetches of the key set, whatever the tokens say
VERIFIED_CACHE = 10_000  # tokens whose signature was checked, kept until they expire


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.jwt_secret
        self.jwks_url = settings.jwt_jwks_url
        default = ["RS256", "ES256"] if self.jwks_url else ["HS256"]
        self.algorithms = listed(settings.jwt_algorithms) or default
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway
        self.refresh_interval = settings.jwks_refresh_interval
        self._keys: dict[str, Any] = {}
        self._fetched_at = -float("inf")
        self._fetching = asyncio.Lock()
        # A client sends the same token with every request: its signature is checked once,
        # its time window on every use.
        # A key that leaves the key set takes its tokens with it (see _refetch).
        self._verified: OrderedDict[str, tuple[Mapping[str, Any], str | None]] = OrderedDict()

    @property
    def configured(self) -> bool:
        return bool(self.secret or self.jwks_url)

    async def verify(self, token: str) -> Mapping[str, Any]:
        """The token's claims, or Unauthenticated saying why."""
        known = self._verified.get(token)
        if known is not None:
            claims, _ = known
            now = time.time()
            if now <= claims["exp"] + self.leeway and now >= claims.get("nbf", now) - self.leeway:
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
        claims = await self._verify(token)
        kid = jwt.get_unverified_header(token).get("kid") if self.jwks_url else None
        self._verified[token] = (claims, kid)
        if len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return claims

    async def _verify(self, token: str) -> Mapping[str, Any]:
        if not self.configured:
            raise Unauthenticated("this server accepts no tokens (no JWT secret or JWKS URL is set)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise Unauthenticated(f"the token's algorithm {str(algorithm)[:20]!r} is not accepted")
        key: Any = await self._key(header.get("kid")) if self.jwks_url else self.secret
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", reason="expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet", reason="not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token is for another audience", reason="audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token is from another issuer", reason="issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify", reason="signature") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}", reason="invalid") from None
        return claims

    async def _key(self, kid: object) -> Any:
        if not isinstance(kid, str):
            raise Unauthenticated("the token names no key (`kid`)")
        stale = time.monotonic() - self._fetched_at > self.refresh_interval
        if stale or kid not in self._keys:
            await self._refetch(force=kid not in self._keys)
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("the token's key is unknown", reason="unknown_key")
        return key

    async def _refetch(self, *, force: bool) -> None:
        async with self._fetching:
            since = time.monotonic() - self._fetched_at
            if not force and since <= self.refresh_interval:
                return  # another request has just fetched them
            if since < JWKS_MIN_REFETCH:
                # A kid fetched a moment ago was not there: wait out the pace, then ask again
                # (the keys may have rotated just now); tokens naming made-up kids wait too.
                await asyncio.sleep(JWKS_MIN_REFETCH - since)
            assert self.jwks_url is not None
            try:
                async with httpx.AsyncClient(timeout=5.0) as http:
                    response = await http.get(self.jwks_url)
                    response.raise_for_status()
                    keys = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                self._fetched_at = time.monotonic()  # and keep the keys we have
                raise Unauthenticated(f"the key set cannot be fetched: {exc}", reason="jwks") from None
            self._keys = {k.key_id: k.key for k in keys.keys if k.key_id}
            self._fetched_at = time.monotonic()
            for token, (_, kid) in list(self._verified.items()):
                if kid not in self._keys:
                    del self._verified[token]
