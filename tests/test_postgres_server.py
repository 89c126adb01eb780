"""Tests for the throwaway PostgreSQL server helper (tests/postgres_server.py)."""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Iterator
from pathlib import Path

import postgres_server
import pytest
import sqlalchemy as sa
from postgres_server import PostgresStartError, create_database, drop_database, running_postgres
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


def _scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_url_shape(admin_url: str) -> None:
    url = make_url(admin_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.database) == (
        "postgres",
        None,
        "127.0.0.1",
        "postgres",
    )
    assert url.port is not None and url.port > 0


def test_server_is_postgresql_15(admin_url: str) -> None:
    version = _scalar(admin_url, "SELECT version()")
    assert isinstance(version, str)
    assert version.startswith("PostgreSQL 15."), version


def test_fast_test_settings(admin_url: str) -> None:
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            settings: dict[str, str] = dict(
                conn.execute(
                    sa.text(
                        "SELECT name, setting FROM pg_settings WHERE name IN ("
                        "'fsync', 'synchronous_commit', 'full_page_writes', "
                        "'listen_addresses', 'max_connections')"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert settings == {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "listen_addresses": "127.0.0.1",
        "max_connections": "100",
    }


def test_create_and_drop_database(admin_url: str) -> None:
    url = create_database(admin_url, "iso_test_db")
    try:
        assert make_url(url).database == "iso_test_db"
        assert make_url(url).port == make_url(admin_url).port
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == (
                    "iso_test_db"
                )
                conn.execute(sa.text("CREATE TABLE t (x int)"))
                conn.execute(sa.text("INSERT INTO t VALUES (1), (2)"))
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT sum(x) FROM t")).scalar_one() == 3
        finally:
            engine.dispose()
    finally:
        drop_database(admin_url, "iso_test_db")
    assert _scalar(admin_url, "SELECT count(*) FROM pg_database WHERE datname = 'iso_test_db'") == 0
    drop_database(admin_url, "iso_test_db")  # dropping a missing database is a no-op


def test_server_does_not_run_as_root(admin_url: str) -> None:
    data_directory = _scalar(admin_url, "SELECT current_setting('data_directory')")
    backend_pid = _scalar(admin_url, "SELECT pg_backend_pid()")
    assert isinstance(data_directory, str)
    assert isinstance(backend_pid, int)
    data_owner = Path(data_directory).stat().st_uid
    proc = Path(f"/proc/{backend_pid}")  # the server is local, so its backend is visible
    if os.geteuid() == 0:
        assert pwd.getpwuid(data_owner).pw_name == "postgres"
        if proc.exists():
            assert proc.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    else:
        assert data_owner == os.geteuid()
    if proc.exists():
        assert proc.stat().st_uid != 0


def test_cleanup_after_exit_and_on_error() -> None:
    with pytest.raises(ZeroDivisionError), running_postgres() as url:
        port = make_url(url).port
        assert port is not None
        data_directory = Path(str(_scalar(url, "SELECT current_setting('data_directory')")))
        assert data_directory.is_dir()
        1 / 0  # noqa: B018 - the body raising must still stop the server
    assert port is not None and not _port_open(port)
    assert not data_directory.exists()
    assert not data_directory.parent.parent.exists()  # the whole temporary directory


def test_start_failure_raises_with_log_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        postgres_server,
        "SERVER_OPTIONS",
        postgres_server.SERVER_OPTIONS + " -c no_such_setting_xyz=1",
    )
    with pytest.raises(PostgresStartError) as excinfo, running_postgres():
        pytest.fail("the server must not start with an unknown setting")
    message = str(excinfo.value)
    assert "PostgreSQL failed to start" in message
    assert "no_such_setting_xyz" in message  # from the tail of the server log
