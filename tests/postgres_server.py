"""A throwaway PostgreSQL server for the test suite.

The server is started from the installed PostgreSQL binaries with
pytest-postgresql's ``PostgreSQLExecutor`` (which drives ``pg_ctl initdb`` and
``pg_ctl start``), on a random free loopback port, with trust authentication.

PostgreSQL refuses to run as root. When the tests run as root (sessions, CI),
the executor is given a tiny generated wrapper script instead of ``pg_ctl``
that runs ``runuser -u postgres -- <real pg_ctl> "$@"``. Because ``pg_ctl``
looks for ``initdb`` and ``postgres`` next to itself, the whole cluster
(``initdb``, the postmaster, its log) then runs as ``postgres`` in a directory
that user owns. When not running as root, the real ``pg_ctl`` is used directly.

Nothing here ever skips: if the server cannot start, ``PostgresStartError`` is
raised with the tail of the server log.

API::

    with running_postgres() as admin_url:   # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
        url = create_database(admin_url, "t_1")
        ...
        drop_database(admin_url, "t_1")
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import port_for
from mirakuru.exceptions import AlreadyRunning
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy.engine import make_url

__all__ = [
    "PostgresStartError",
    "create_database",
    "drop_database",
    "find_pg_ctl",
    "running_postgres",
]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SUPERUSER = "postgres"  # database superuser created by initdb (--username)
SYSTEM_USER = "postgres"  # OS account the server runs as when we are root
PG_CTL_CANDIDATES = ("/usr/lib/postgresql/15/bin/pg_ctl",)
START_TIMEOUT = 60  # seconds, for initdb, start and stop each
PORT_ATTEMPTS = 3  # retry with a new random port if the chosen one was taken meanwhile

# Settings for a fast, disposable server (durability is irrelevant here).
SERVER_OPTIONS = " ".join(
    f"-c {name}={value}"
    for name, value in {
        "listen_addresses": "'127.0.0.1'",
        "max_connections": "100",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }.items()
)


class PostgresStartError(RuntimeError):
    """The throwaway PostgreSQL server could not be started."""


def find_pg_ctl() -> str:
    """Return the real path of the PostgreSQL 15 ``pg_ctl`` binary.

    ``$PG_CTL`` overrides the search. Symlinks (e.g. /usr/local/bin/pg_ctl) are
    resolved so that pg_ctl finds ``initdb``/``postgres`` in its real directory.
    """
    candidates = [os.environ.get("PG_CTL"), *PG_CTL_CANDIDATES, shutil.which("pg_ctl")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    raise PostgresStartError(
        "pg_ctl not found (looked at $PG_CTL, "
        f"{', '.join(PG_CTL_CANDIDATES)} and $PATH); install the PostgreSQL 15 server binaries"
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no server log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<server log is empty>"


def _write_runuser_wrapper(path: Path, pg_ctl: str) -> None:
    """Write an executable that runs the real pg_ctl as the postgres OS user."""
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    if not os.access(runuser, os.X_OK):
        raise PostgresStartError("running as root but `runuser` is not available")
    # cd / : the caller's working directory may not be readable by postgres.
    path.write_text(
        "#!/bin/sh\n"
        "cd / || exit 1\n"
        f'exec {shlex.quote(runuser)} -u {SYSTEM_USER} -- {shlex.quote(pg_ctl)} "$@"\n'
    )
    path.chmod(0o755)


def _start(pg_ctl: str, pgdir: Path) -> PostgreSQLExecutor:
    """Init and start a cluster in ``pgdir``; retry on a port taken in the meantime."""
    logfile = pgdir / "postgresql.log"
    last_error: BaseException | None = None
    for _ in range(PORT_ATTEMPTS):
        port = port_for.get_port(None)
        assert port is not None
        executor = PostgreSQLExecutor(
            executable=pg_ctl,
            host=HOST,
            port=port,
            datadir=str(pgdir / "data"),
            unixsocketdir=str(pgdir),
            logfile=str(logfile),
            startparams=f"-w -t {START_TIMEOUT}",
            dbname="postgres",
            user=SUPERUSER,
            timeout=START_TIMEOUT,
            postgres_options=SERVER_OPTIONS,
        )
        try:
            executor.start()  # returns as soon as the port accepts connections
            # Let `pg_ctl start -w` (via runuser) finish too, so it is not still
            # alive - and killed with its process group - when the server is stopped.
            if executor.process is not None:
                returncode = executor.process.wait(timeout=START_TIMEOUT)
                if returncode != 0:
                    raise RuntimeError(f"`pg_ctl start` exited with code {returncode}")
            return executor
        except Exception as exc:
            last_error = exc
            with contextlib.suppress(Exception):
                # pg_ctl stop only if a server came up; otherwise just reap leftovers.
                if executor.running():
                    executor.stop()
                else:
                    executor.kill()
            log = _tail(logfile)
            if isinstance(exc, AlreadyRunning) or "could not bind" in log or "in use" in log:
                # Another process grabbed the port between selection and bind.
                logfile.unlink(missing_ok=True)
                executor.clean_directory()
                continue
            break
    details = str(last_error)
    output = getattr(last_error, "output", None)  # e.g. initdb via CalledProcessError
    if output:
        details += "\n" + (output.decode(errors="replace") if isinstance(output, bytes) else output)
    raise PostgresStartError(
        f"PostgreSQL failed to start with {pg_ctl} in {pgdir}: "
        f"{type(last_error).__name__}: {details}\n"
        f"--- tail of {logfile} ---\n{_tail(logfile)}"
    ) from last_error


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL server; yield its admin SQLAlchemy URL.

    The URL is ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``. On
    exit (also when the body raises) the server is stopped and all its files
    (data directory, socket, log) are removed.
    """
    real_pg_ctl = find_pg_ctl()
    as_root = os.geteuid() == 0
    # base/            root-owned (0711 when root): holds the pg_ctl wrapper
    # base/pg/         owned by the server's OS user: data/, unix socket, postgresql.log
    base = Path(tempfile.mkdtemp(prefix="pgtest-"))
    executor: PostgreSQLExecutor | None = None
    try:
        pgdir = base / "pg"
        pgdir.mkdir(mode=0o700)
        if as_root:
            try:
                account = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise PostgresStartError(
                    f"running as root but there is no {SYSTEM_USER!r} system user to run "
                    "PostgreSQL as (it refuses to run as root)"
                ) from None
            base.chmod(0o711)  # let postgres traverse to pg/, but not write next to the wrapper
            os.chown(pgdir, account.pw_uid, account.pw_gid)
            pg_ctl = str(base / "pg_ctl")
            _write_runuser_wrapper(Path(pg_ctl), real_pg_ctl)
        else:
            pg_ctl = real_pg_ctl
        executor = _start(pg_ctl, pgdir)
        yield f"postgresql+psycopg://{SUPERUSER}@{HOST}:{executor.port}/postgres"
    finally:
        if executor is not None:
            try:
                executor.stop()
            except Exception:
                logger.exception("failed to stop the throwaway PostgreSQL server")
        try:
            shutil.rmtree(base)
        except OSError:
            logger.exception("failed to remove the throwaway PostgreSQL directory %s", base)


def _janitor(admin_url: str, name: str) -> DatabaseJanitor:
    url = make_url(admin_url)
    return DatabaseJanitor(
        user=url.username or SUPERUSER,
        password=url.password if isinstance(url.password, str) else None,
        host=url.host or HOST,
        port=url.port or 5432,
        dbname=name,
        maintenance_dbname=url.database or "postgres",
        connection_timeout=10,
    )


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url``; return its URL."""
    _janitor(admin_url, name).init()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (if it exists), terminating its connections first."""
    _janitor(admin_url, name).drop()
