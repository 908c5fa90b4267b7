"""Development tokens: the HS256 JWTs (`sub`, `iat`, `exp`) that `--jwt-secret` mints.

One definition for every tool that mints a token from a shared secret (the reference server's
development sign-in and `asp token`, the load tests, the test suite), so none of them has to
import another's internals. The claims are those ASP-AUTH-012 reads: `sub` names the user, `exp`
bounds the token's life; no `nbf`.
"""

from __future__ import annotations

import time

import jwt

ALGORITHM = "HS256"


def mint(user: str, secret: str, ttl_seconds: int = 3600, now: float | None = None) -> str:
    """A signed HS256 token for `user`, valid from `now` (default: the current time) for `ttl_seconds`.

    Raises ValueError when `user` is empty (ASP-AUTH-012 refuses a token whose `sub` is not a
    non-empty string) or `secret` is empty (such a token proves nothing).
    """
    if not user:
        raise ValueError("a token needs a user")
    if not secret:
        raise ValueError("a token needs a secret")
    issued = int(now if now is not None else time.time())
    return jwt.encode({"sub": user, "iat": issued, "exp": issued + ttl_seconds}, secret, algorithm=ALGORITHM)
