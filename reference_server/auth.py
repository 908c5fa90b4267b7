"""Bearer tokens: where a handshake carries them, how they are checked, how dev tokens are minted."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import jwt

from spec import TOKEN_SUBPROTOCOL_PREFIX

ALGORITHM = "HS256"
MAX_SUBJECT_LENGTH = 256


class AuthError(Exception):
    """The token is missing or unacceptable. The message is for logs and never holds the token."""


def extract_token(
    query: Mapping[str, str], subprotocols: Iterable[str], headers: Mapping[str, str]
) -> str | None:
    """The token from the `asp.token.` subprotocol, the `token` query parameter or a Bearer header."""
    for offered in subprotocols:
        if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return offered[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    if query.get("token"):
        return query["token"]
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return None


def verify(token: str | None, secret: str) -> str:
    """The user id a valid token names; AuthError otherwise (alg none and other algs are refused)."""
    if not token:
        raise AuthError("no token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token ({type(exc).__name__})") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT_LENGTH:
        raise AuthError("token names no user")
    return subject


def mint(user: str, secret: str, ttl_seconds: int = 3600, now: float | None = None) -> str:
    """A signed HS256 token for `user`, valid for `ttl_seconds`."""
    issued = int(now if now is not None else time.time())
    return jwt.encode({"sub": user, "iat": issued, "exp": issued + ttl_seconds}, secret, algorithm=ALGORITHM)
