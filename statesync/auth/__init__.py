"""Credentials in, identities out: the admin secret, JWTs (HS256 or JWKS), anonymous."""
