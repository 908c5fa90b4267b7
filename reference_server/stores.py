"""ASP_DATABASE_URL and ASP_REDIS_URL as a user meets them: checked once in the settings, opened once
before listening.

`url_problem(url)` is the settings' check (reference_server.config): the URL parses
(`sqlalchemy.engine.make_url`), names a database SQLAlchemy knows, with an async driver (or one
SQLAlchemy can use asynchronously, as psycopg), and that driver's module is importable here; each
failure is a sentence naming what to do (an async driver's URL, the pip package or this package's
extra to install). `open_problem(url)` is the start-up's: it prepares the database once as the server
will (tables or migrations) and says in a sentence why it could not (a SQLite file in a missing
directory or that is no database, a PostgreSQL server that refuses, a migration that fails).

`redis_url_problem` and `redis_open_problem` do the same for ASP_REDIS_URL (set: several processes
share state); the Redis client is imported only then (the embedded server imports none).

None ever shows a password: URLs are rendered with `hide_password=True`, and a URL that does not
parse is not shown at all.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

PACKAGE = "agent-stream-protocol"
# The async driver to suggest for a URL that names a synchronous one, per backend.
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "aiomysql", "mariadb": "aiomysql"}
EXAMPLES = "sqlite+aiosqlite:///asp.db or postgresql+asyncpg://USER@HOST/DATABASE"
OPEN_TIMEOUT_S = 15.0


def install_hint(module: str) -> str:
    """How to install the distribution of a missing driver module: this package's extra when one
    of its extras requires it (read from its metadata), else the module's own name on PyPI."""
    try:
        requirements = importlib.metadata.requires(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        if _distribution(name) == module.lower() and "extra ==" in marker:
            extra = marker.split("extra ==", 1)[1].strip().strip("'\"")
            return f"pip install '{PACKAGE}[{extra}]'"
    return f"pip install {module}"


def _distribution(requirement: str) -> str:
    """`asyncpg>=0.29` -> `asyncpg` (lower case, `-` and `_` alike)."""
    name = requirement.strip()
    for stop in "<>=!~[ (":
        name = name.split(stop, 1)[0]
    return name.lower().replace("-", "_")


def url_problem(url: str) -> str | None:
    """Why `url` cannot be this server's database URL (one sentence, no password), or None.

    Imports the URL's SQLAlchemy dialect and its driver module (as the server would at start)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return f"is not a database URL; use one such as {EXAMPLES}"
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return (
            f"{shown} names no database SQLAlchemy knows ({parsed.drivername!r}); use one such as {EXAMPLES}"
        )
    dialect = dialect.get_async_dialect_cls(parsed)  # psycopg's async variant, for one
    if not getattr(dialect, "is_async", False):
        driver = ASYNC_DRIVERS.get(parsed.get_backend_name())
        better = f"; use {_with_driver(parsed, driver)}" if driver else f" (use an async one: {EXAMPLES})"
        return f"{shown} names the driver {parsed.get_driver_name()}, which is not async{better}"
    try:
        dialect.import_dbapi()
    except ImportError as missing:
        module = (missing.name or parsed.get_driver_name()).split(".")[0]
        driver = ASYNC_DRIVERS.get(parsed.get_backend_name())
        other = ""  # this backend's async driver when it is installed, such as asyncpg for postgresql://
        if driver and driver != module and importlib.util.find_spec(driver) is not None:
            other = f", or use {_with_driver(parsed, driver)}"
        return f"{shown} needs the driver {module}, which is not installed: {install_hint(module)}{other}"
    return None


def _with_driver(url: URL, driver: str) -> str:
    """`url` with its backend's `driver`, as shown to the user (no password)."""
    return url.set(drivername=f"{url.get_backend_name()}+{driver}").render_as_string(hide_password=True)


async def _prepare(url: str) -> None:
    """Open the database as the server's start does: its tables (SQLite) or migrations to head
    (Alembic), so a file that is no database or a migration that fails is refused here, in one
    line, and not as a traceback after the server announced it was listening."""
    from reference_server.storage import SqlConversationStore

    before = set(threading.enumerate())
    store = SqlConversationStore(url, cache_size=0)
    try:
        await store.start()
    finally:
        await store.close()
        # A driver's own threads (aiosqlite's, after a failed connect) hand their last result to
        # this loop: let them, or they meet a closed loop and print a traceback.
        started = set(threading.enumerate()) - before
        for _ in range(200):  # at most 2 s
            if not any(thread.is_alive() for thread in started):
                break
            await asyncio.sleep(0.01)


def open_problem(url: str, timeout_s: float = OPEN_TIMEOUT_S) -> str | None:
    """Why the database at `url` (a URL `url_problem` accepts) cannot be opened, or None.

    Prepares it once in an event loop of its own (before the server's starts), as the server's
    start would: for SQLite that creates the file and its tables, for any other database it runs
    the migrations to head. The reason is the driver's first line, never a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    try:
        asyncio.run(asyncio.wait_for(_prepare(url), timeout_s))
    except TimeoutError:
        return f"cannot open {shown}: no answer within {timeout_s:g} s"
    except Exception as failed:  # any driver's refusal becomes one line
        reason = failed.orig if isinstance(failed, DBAPIError) and failed.orig is not None else failed
        text = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
        if parsed.password:
            text = text.replace(str(parsed.password), "***")
        return f"cannot open {shown}: {text}"
    return None


def shown_url(url: str) -> str:
    """Any `scheme://user:password@host/...` URL as shown to the user: the password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "the URL"


def redis_url_problem(url: str) -> str | None:
    """Why `url` (set) cannot be this server's Redis URL (one sentence, no password), or None."""
    from redis.asyncio.connection import parse_url

    try:
        parse_url(url)
    except ValueError as invalid:
        return f"is not a Redis URL ({str(invalid).rstrip('.')}); use one such as redis://HOST:6379/0"
    return None


async def _ping(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
    finally:
        await client.aclose()


def redis_open_problem(url: str, timeout_s: float = OPEN_TIMEOUT_S) -> str | None:
    """Why the Redis at `url` (one `redis_url_problem` accepts) does not answer a PING, or None."""
    try:
        asyncio.run(asyncio.wait_for(_ping(url), timeout_s))
    except TimeoutError:
        return f"cannot reach {shown_url(url)}: no answer within {timeout_s:g} s"
    except Exception as failed:  # any refusal (connection, authentication) becomes one line
        text = (str(failed).strip().splitlines() or [type(failed).__name__])[0]
        return f"cannot reach {shown_url(url)}: {text}"
    return None
