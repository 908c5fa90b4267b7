"""What a check is told: the target, credentials, budgets and selections."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class UsageError(Exception):
    """The check was asked for something it cannot do as given (exit 2, one line, no secret)."""


def check_url(url: str) -> str:
    """`url` when it is a ws:// or wss:// URL with a host; checked before any token is attached.

    Raises:
        UsageError: any other scheme, no host, or a token already in the query string.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        shown = (
            f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
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

    def validate(self) -> None:
        """Raises UsageError for a bad URL, no credentials or a bad budget (before any connection)."""
        check_url(self.url)
        if not self.tokens and self.jwt_secret is None:
            raise UsageError("no credentials: give --token, --token-file or --jwt-secret")
        if self.timeout_multiplier <= 0:
            raise UsageError("--timeout-multiplier must be positive")
        if self.max_wait_s <= 0:
            raise UsageError("--max-wait must be positive")
        if self.jwt_algorithms is not None:
            unknown = [name for name in self.jwt_algorithms if name not in JWS_ALGORITHMS]
            if unknown or not self.jwt_algorithms:
                raise UsageError(
                    f"--jwt-algorithms takes JWS algorithm names ({', '.join(JWS_ALGORITHMS)}), "
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


def load_token_file(path: Path) -> list[str]:
    """One token per line; blank lines and # comments ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
