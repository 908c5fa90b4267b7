"""Tokens for the users a case needs: minted with --jwt-secret, or taken from --token/--token-file.

Minted users are fresh per case (`asp-kit-<run>-<case>-<user>`). Given tokens are a fixed set of
users; the runner spreads the cases over them (`assign`), so that no two cases running at the
same time share a user and each user's rate limit is shared by as few cases as possible.
Every token the kit handles is known here, so `redact` can keep it out of every message.
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Sequence
from urllib.parse import urlsplit

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from conformance.options import CheckOptions

REDACTED = "<redacted>"


class Unavailable(Exception):
    """The check was not given what a case needs; the case is untestable, with this reason."""


class Credentials:
    def __init__(self, options: CheckOptions) -> None:
        self.options = options
        self.run_tag = secrets.token_hex(3)
        self._slots: dict[int, tuple[int, ...]] = {}
        self._issued: set[str] = set(options.tokens)
        try:  # a password in the URL's userinfo is as secret as a token
            password = urlsplit(options.url).password
        except ValueError:
            password = None
        if password:
            self._issued.add(password)

    @property
    def can_mint(self) -> bool:
        return self.options.jwt_secret is not None

    def users_available(self) -> int | None:
        """How many distinct users the check can act as (None: as many as needed)."""
        return None if self.can_mint else len(self.options.tokens)

    def assign(self, case_index: int, slots: Sequence[int]) -> None:
        """Case `case_index` acts as the given tokens (indices into --token/--token-file), in order."""
        self._slots[case_index] = tuple(slots)

    def slots(self, case_index: int) -> tuple[int, ...]:
        return self._slots.get(case_index, tuple(range(len(self.options.tokens))))

    def users_for(self, case_index: int) -> int | None:
        """How many distinct users case `case_index` may use (None: as many as needed)."""
        return None if self.can_mint else len(self.slots(case_index))

    def user_name(self, case_index: int, user: int) -> str:
        return f"{self.options.user_prefix}-{self.run_tag}-{case_index}-{user}"

    def identity(self, case_index: int, user: int = 0) -> str:
        """Who user `user` of a case is, as the kit tracks users (for its own rate pacing)."""
        if self.can_mint:
            return self.user_name(case_index, user)
        slots = self.slots(case_index)
        return f"token-{slots[user]}" if user < len(slots) else f"token-missing-{user}"

    def token(self, case_index: int, user: int = 0) -> str:
        """The token of user `user` of case `case_index`.

        Raises:
            Unavailable: no --jwt-secret and fewer given tokens than the case needs users.
        """
        if self.can_mint:
            return self.mint({"sub": self.user_name(case_index, user)})
        slots = self.slots(case_index)
        if user < len(slots):
            return self.options.tokens[slots[user]]
        raise Unavailable(f"needs {user + 1} distinct users' tokens (--token-file) or --jwt-secret")

    def mint(self, claims: dict[str, object], *, ttl: int = 600, key: str | None = None) -> str:
        secret = key if key is not None else self.options.jwt_secret
        if secret is None:
            raise Unavailable("needs --jwt-secret to mint tokens")
        now = int(time.time())
        body: dict[str, object] = {"iat": now, "exp": now + ttl, **claims}
        with warnings.catch_warnings():  # a secret shorter than the hash: the server judges its key
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            token = jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")
        return self._issue(token)

    def mint_with(self, algorithm: str, claims: dict[str, object], *, ttl: int = 600) -> str:
        """A token signed with the --jwt-secret under the HMAC `algorithm` (HS256, HS384, HS512).

        Raises:
            Unavailable: no --jwt-secret.
        """
        secret = self.options.jwt_secret
        if secret is None:
            raise Unavailable("needs --jwt-secret to mint tokens")
        now = int(time.time())
        body = {"iat": now, "exp": now + ttl, **claims}
        with warnings.catch_warnings():  # a secret shorter than the hash: the server judges, not PyJWT
            warnings.simplefilter("ignore")
            return self._issue(jwt.encode(body, secret, algorithm=algorithm))

    def unsigned(self, subject: str) -> str:
        """A JWT with alg none: needs no secret to forge."""
        now = int(time.time())
        return self._issue(
            jwt.encode({"sub": subject, "iat": now, "exp": now + 600}, key=None, algorithm="none")
        )

    def forged(self, subject: str) -> str:
        """A well-formed HS256 JWT signed with a secret the server cannot know."""
        return self.mint({"sub": subject}, key=secrets.token_urlsafe(48))

    def _issue(self, token: str) -> str:
        self._issued.add(token)
        return token

    def redact(self, text: str) -> str:
        """`text` with every token the kit was given or made, and the secret, replaced."""
        hidden = sorted(self._issued | ({self.options.jwt_secret} if self.options.jwt_secret else set()))
        for secret in sorted(hidden, key=len, reverse=True):
            if len(secret) >= 6 and secret in text:
                text = text.replace(secret, REDACTED)
        return text
