"""What a check is told: the target, credentials, budgets and selections."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

# Credentials from the environment keep them out of `ps` and CI logs; `asp check` and the pytest
# plugin both read them, and their flags win when given.
JWT_SECRET_VARIABLE = "ASP_CHECK_JWT_SECRET"
TOKEN_VARIABLE = "ASP_CHECK_TOKEN"


def cli_flag(name: str) -> str:
    """A check option's flag as `asp check` spells it (`--max-wait`): the default of `flag` below."""
    return name


class UsageError(Exception):
    """The check was asked for something it cannot do as given (exit 2, one line, no secret)."""


def check_url(url: str) -> str:
    """`url` when it is a ws:// or wss:// URL with a host; checked before any token is attached.

    Raises:
        UsageError: any other scheme, no host, or a token already in the query string.
    """
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018  (raises on a malformed host, such as an unclosed IPv6 bracket)
    except ValueError as exc:
        raise UsageError(f"the target is not a URL: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        try:  # the port too (http://HOST:8001/... was shown as http://HOST/...); never the userinfo
            port = f":{parts.port}" if parts.port is not None else ""
        except ValueError:
            port = ""
        shown = (
            f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
            if parts.scheme
            else "a URL without a scheme"
        )
        raise UsageError(f"the target must be a ws:// or wss:// URL with a host, not {shown}")
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise UsageError("the target URL has a malformed port") from None
    if "token" in parse_qs(parts.query):
        raise UsageError("give the token with --token or --token-file, not in the URL")
    return url


def shown_url(url: str) -> str:
    """`url` as the kit prints and stores it: a userinfo password replaced by `***` (user kept)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


@dataclass
class CheckOptions:
    """A check's inputs. Waits are seconds; `max_wait_s` bounds every real-time wait a case needs
    (an idle timeout, a long run, a pause under the rate limit): longer ones make it untestable."""

    url: str
    tokens: list[str] = field(default_factory=list)
    jwt_secret: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_multiplier: float = 1.0
    max_wait_s: float = 20.0  # longest real-time wait (idle timeout) a case may take
    max_connections: int | None = None  # when the server does not announce its limit
    include: list[str] = field(default_factory=list)  # case ids, requirement ids or sections
    exclude: list[str] = field(default_factory=list)
    strict: bool = False  # warnings (missed SHOULDs) fail the run
    expected_failures: Path | None = None
    fuzz_examples: int = 40  # generated inputs per fuzz case
    # The JWS algorithms the server is configured for (--jwt-algorithms); None: unknown, and the
    # `alg` clause of ASP-AUTH-012 is untestable.
    jwt_algorithms: list[str] | None = None
    user_prefix: str = "asp-kit"

    def validate(self, flag: Callable[[str], str] = cli_flag) -> None:
        """Raises UsageError for a bad URL, no credentials or a bad budget (before any connection).

        `flag` spells an option as the caller's own interface names it (the pytest plugin's
        `--asp-max-wait` for `--max-wait`), so a message names what the user can type."""
        check_url(self.url)
        if not self.tokens and self.jwt_secret is None:
            raise UsageError(
                f"no credentials: give {flag('--token')}, {flag('--token-file')} or {flag('--jwt-secret')} "
                f"(or {TOKEN_VARIABLE} / {JWT_SECRET_VARIABLE})"
            )
        if not positive(self.timeout_multiplier):
            raise UsageError(
                f"{flag('--timeout-multiplier')} must be a positive number, not {self.timeout_multiplier}"
            )
        if not positive(self.max_wait_s):
            raise UsageError(
                f"{flag('--max-wait')} must be a positive number of seconds, not {self.max_wait_s}"
            )
        if self.max_connections is not None and self.max_connections < 1:
            raise UsageError(f"{flag('--max-connections')} must be at least 1, not {self.max_connections}")
        if self.fuzz_examples < 1:
            raise UsageError(f"{flag('--fuzz-examples')} must be at least 1, not {self.fuzz_examples}")
        if self.expected_failures is not None:
            from conformance.baseline import Baseline

            Baseline.load(self.expected_failures)  # raises UsageError for a file it cannot use
        if self.jwt_algorithms is not None:
            unknown = [name for name in self.jwt_algorithms if name not in JWS_ALGORITHMS]
            if unknown or not self.jwt_algorithms:
                raise UsageError(
                    f"{flag('--jwt-algorithms')} takes JWS algorithm names ({', '.join(JWS_ALGORITHMS)}), "
                    f"not {', '.join(unknown) or 'an empty list'}"
                )


# JWS algorithm names (RFC 7518 section 3.1, and EdDSA of RFC 8037): what --jwt-algorithms accepts.
JWS_ALGORITHMS = (
    *("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"),
    *("PS256", "PS384", "PS512", "EdDSA"),
)


def parse_algorithms(text: str | None) -> list[str] | None:
    """`--jwt-algorithms HS256,HS384` as a list (None when not given); checked by `validate`."""
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def positive(value: float) -> bool:
    """Whether a budget or factor is a finite number above 0 (nan and inf are not)."""
    return math.isfinite(value) and value > 0


def load_token_file(path: Path, flag: str = "--token-file") -> list[str]:
    """One token per line; blank lines and # comments ignored. `flag` is the option that named it.

    Raises:
        UsageError: the file cannot be read, is not UTF-8 text or holds no token (the message names
            the flag).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path} is not UTF-8 text (one token a line)") from None
    tokens = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not tokens:
        raise UsageError(f"{flag} {path} holds no token (one a line; blank lines and # comments are skipped)")
    return tokens
