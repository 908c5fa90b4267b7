"""Bearer tokens: HS256 JWTs whose `sub` claim is the user id (ASP-AUTH-001..006, ASP-AUTH-012).

`user_of(token, secret)` is the whole policy: it returns the user id, or None for any token that
must be refused with 4001. It never raises and never logs the token (ASP-SEC-001).
"""

from __future__ import annotations

import jwt

MAX_SUBJECT_LENGTH = 256  # session.user.id allows at most 256 characters (ASP-AUTH-012 lets us bound it)


def user_of(token: str | None, secret: str) -> str | None:
    """The authenticated user id, or None when the token must be refused.

    Refused: no token, a malformed or forged one, `alg` other than HS256 (`none` included,
    ASP-AUTH-005), expired or without `exp` (ASP-AUTH-006; requiring `exp` is this server's
    policy), `nbf` in the future, and a `sub` that is missing, not a string, empty or longer than
    256 characters (ASP-AUTH-004, ASP-AUTH-012).
    """
    if not token:
        return None
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        return None
    return subject
