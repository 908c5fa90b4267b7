"""Bearer tokens: how they are checked and how tokens are minted (ASP-AUTH-005, -006, -012).

Which carrier counts is a handshake decision (`reference_server.protocol.handshake.token_of`).
"""

from __future__ import annotations

import time

import jwt

ALGORITHM = "HS256"
MAX_SUBJECT_LENGTH = 256


class AuthError(Exception):
    """The token is missing or unacceptable. The message is for logs and never holds the token."""


def verify(token: str | None, secret: str) -> str:
    """The user id a valid token names; AuthError otherwise.

    Refused: no token, a bad signature, an algorithm other than HS256 (alg none included), no
    `exp` or an expired one, an `nbf` in the future, a `sub` that is not a non-empty string of at
    most 256 characters (ASP-AUTH-012).
    """
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
