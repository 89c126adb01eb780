"""Fixtures: every ledger test runs on a real SQLite file and on a real
throwaway PostgreSQL server (started once per session from the installed
binaries; a failure to start fails the run, it never skips)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import reliability
from postgres_server import create_database, drop_database, running_postgres

from ledger.database import database_url, migrate
from ledger.errors import RecordRefused
from ledger.signing import Ed25519PrivateKey, public_key_bytes
from ledger.store import Appended, Result, Signed, Store
from producers.bootstrap import admit, genesis
from producers.events import Signer

_counter = itertools.count()


# Fixed test keys (RFC 8032 style: 32-byte seeds), so signed test data is reproducible.
def fixed_key(name: str) -> Ed25519PrivateKey:
    import hashlib

    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"rledger-test:" + name.encode()).digest()
    )


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    name = f"t{next(_counter)}"
    url = create_database(pg_admin_url, name)
    yield url
    drop_database(pg_admin_url, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return database_url(str(tmp_path / "ledger.db"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return database_url(str(tmp_path / "ledger.db"))
    url: str = request.getfixturevalue("pg_url")
    return url


@dataclass
class World:
    """A migrated ledger with an operator and helpers to admit orgs and append."""

    store: Store
    url: str
    operator: Signer
    orgs: dict[str, Signer] = field(default_factory=dict)

    def admit(self, org: str, roles: list[str] | None = None, region: str = "CN-GD") -> Signer:
        signer = Signer(org, fixed_key(org))
        records, _ = admit(
            self.operator,
            org,
            org,
            roles or ["recycler"],
            region,
            public_key_bytes(signer.private_key.public_key()),
        )
        self.ok(*records)
        self.orgs[org] = signer
        return signer

    def append(self, *records: Signed, atomic: bool = False) -> list[Result]:
        return self.store.append(list(records), atomic=atomic)

    def ok(self, *records: Signed) -> list[Appended]:
        results = self.append(*records)
        for r in results:
            if not isinstance(r, Appended):
                raise AssertionError(f"refused: {r}")
        return [r for r in results if isinstance(r, Appended)]

    def refused(self, record: Signed) -> RecordRefused:
        """Append one record that must be refused; assert nothing changed."""
        before = (self.store.last_seq(), self.store.projection_rows())
        [result] = self.append(record)
        assert isinstance(result, RecordRefused), f"expected a refusal, got {result}"
        assert (self.store.last_seq(), self.store.projection_rows()) == before
        return result

    def heads(self, *lots: str) -> dict[str, str]:
        return self.store.heads(lots)

    def create(
        self,
        who: Signer,
        lot: str,
        mass_g: int,
        material: str = "steel.hms1",
        origin: str = "post_consumer",
        **extra: Any,
    ) -> Appended:
        body = {"lot": lot, "material": material, "mass_g": mass_g, "origin": origin, **extra}
        return self.ok(who.record("create", body))[0]


def make_world(url: str) -> World:
    migrate(url)
    store = Store.open(url)
    operator = Signer("org:operator", fixed_key("operator"))
    world = World(store, url, operator)
    world.ok(genesis(operator, "Operator", "CN"))
    return world


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    w = make_world(db_url)
    yield w
    w.store.close()


@pytest.fixture
def sqlite_world(sqlite_url: str) -> Iterator[World]:
    w = make_world(sqlite_url)
    yield w
    w.store.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI (CI=true) nothing may skip silently: a skipped test fails the run."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, not a pytest-xdist worker
        reliability.clear()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A whole, passing run (no paths, no -k) rewrites docs/reliability.md from its tallies."""
    config = session.config
    if hasattr(config, "workerinput") or exitstatus != 0:
        return
    if config.option.file_or_dir or config.option.keyword or config.option.markexpr:
        return
    reliability.render(long_run=bool(os.environ.get("RLEDGER_LONG")))
