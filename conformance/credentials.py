"""Tokens for the users a case needs: minted with --jwt-secret, or taken from --token/--token-file."""

from __future__ import annotations

import secrets
import time

import jwt

from conformance.options import CheckOptions


class Unavailable(Exception):
    """The check was not given what a case needs; the case is untestable, with this reason."""


class Credentials:
    def __init__(self, options: CheckOptions) -> None:
        self.options = options
        self.run_tag = secrets.token_hex(3)

    @property
    def can_mint(self) -> bool:
        return self.options.jwt_secret is not None

    def users_available(self) -> int | None:
        """How many distinct users the check can act as (None: as many as needed)."""
        return None if self.can_mint else len(self.options.tokens)

    def user_name(self, case_index: int, user: int) -> str:
        return f"{self.options.user_prefix}-{self.run_tag}-{case_index}-{user}"

    def token(self, case_index: int, user: int = 0) -> str:
        if self.can_mint:
            return self.mint({"sub": self.user_name(case_index, user)})
        if user < len(self.options.tokens):
            return self.options.tokens[user]
        raise Unavailable(f"needs {user + 1} distinct users' tokens (--token-file) or --jwt-secret")

    def mint(self, claims: dict[str, object], *, ttl: int = 600, key: str | None = None) -> str:
        secret = key if key is not None else self.options.jwt_secret
        if secret is None:
            raise Unavailable("needs --jwt-secret to mint tokens")
        now = int(time.time())
        body: dict[str, object] = {"iat": now, "exp": now + ttl, **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")

    def unsigned(self, subject: str) -> str:
        """A JWT with alg none: needs no secret to forge."""
        now = int(time.time())
        return jwt.encode({"sub": subject, "iat": now, "exp": now + 600}, key=None, algorithm="none")

    def forged(self, subject: str) -> str:
        """A well-formed HS256 JWT signed with a secret the server cannot know."""
        return self.mint({"sub": subject}, key=secrets.token_urlsafe(48))
