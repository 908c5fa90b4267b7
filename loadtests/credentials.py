"""Where the load test's users get their tokens, and how secrets stay out of everything it prints.

Secrets reach Locust through the environment (`ASP_LOAD_JWT_SECRET`, `ASP_LOAD_TOKEN`), never its
command line: a command line is visible to every user of the machine (`ps`, /proc/PID/cmdline).
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from jwt.warnings import InsecureKeyLengthWarning

from spec.devtokens import mint

SECRET_ENV = "ASP_LOAD_JWT_SECRET"
TOKEN_ENV = "ASP_LOAD_TOKEN"
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def read_token_file(path: str | Path) -> list[str]:
    """Tokens, one per line (blank lines and `#` comments skipped). Raises OSError when unreadable."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@dataclass
class Credentials:
    """A token per user: minted with `jwt_secret` (a distinct user each), else one of `tokens` in
    turn, else `token` for every user, else none (the server will refuse, and that is counted)."""

    jwt_secret: str = ""
    token: str = ""
    tokens: list[str] = field(default_factory=list)
    user_prefix: str = "load"
    tag: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(3)}")

    def token_for(self, number: int) -> str:
        if self.jwt_secret:
            with warnings.catch_warnings():  # a short secret: the server judges its own key, not the tool
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                return mint(f"{self.user_prefix}-{self.tag}-{number}", self.jwt_secret, ttl_seconds=3600)
        if self.tokens:
            return self.tokens[number % len(self.tokens)]
        return self.token

    def secrets(self) -> list[str]:
        return [value for value in (self.jwt_secret, self.token, *self.tokens) if value]


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every known secret and anything shaped like a JWT replaced by `[redacted]`."""
    for value in sorted(filter(None, known), key=len, reverse=True):
        text = text.replace(value, "[redacted]")
    return _JWT.sub("[redacted]", text)
