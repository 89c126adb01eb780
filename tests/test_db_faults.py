"""The database fails in the middle of a write: the client gets a clear retryable error over
the API, nothing of the batch is kept, and the retry succeeds (issue 8/8).

The API runs in-process (schema.app.create_app over httpx's ASGI transport)
on a real SQLite file or a real PostgreSQL database. Each fault strikes after
the batch's rows went into ``records`` (the statement log proves it), before
its projections were written:

* SQLite, disk full: when the records INSERT has run, the file's size limit
  is clamped to its current size (``PRAGMA max_page_count``), so the next page
  the write needs fails with SQLITE_FULL, "database or disk is full" — what
  SQLite answers when the disk is full. The retry finds room again.
* PostgreSQL, disk full: a trigger on ``lots`` raises SQLSTATE 53100
  (disk_full) with the message and hint PostgreSQL's storage manager gives
  when it cannot extend a file (md.c): the error class and code a full disk
  produces, raised where the write extends a table. (A tablespace on a small
  filesystem would need a mount; the test runs unprivileged.)
* PostgreSQL, dropped connection: another session holds ``LOCK TABLE lots IN
  SHARE MODE``; once the write is seen waiting for it (pg_stat_activity), that
  session kills the writer's backend with ``pg_terminate_backend`` — what the
  server sees when PostgreSQL restarts or a proxy cuts the connection.
* PostgreSQL, the store's idle connections terminated between two batches.

For each: the raw answer is HTTP 503 with ``extensions.code``
STORE_UNAVAILABLE, ``retryable: true``, ``Retry-After``, a message that says
to retry, and no trace of a stack, SQL or driver; the ledger is exactly as
before (records, Merkle leaves, every projection row); then the SDK's
``submit`` meets the same fault, retries the same batch and gets every record
``Recorded`` with ``existing: false``; ``verify_store`` passes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from conftest import World, make_world
from crash_clients import hash_of, tally
from sqlalchemy import Engine, create_engine, event, func, select, text

from ledger.store import Signed
from ledger.tables import merkle_hashes, records
from ledger.tokens import issue_token
from ledger.verify import verify_store
from producers.client import AsyncLedgerClient, Recorded, RetryPolicy
from producers.events import Signer
from schema.app import create_app

T = TypeVar("T")
RECORD = """
mutation Record($events: [SignedEvent!]!) {
  recordEvents(events: $events) { __typename ... on Recorded { id seq existing } }
}"""
LEAKS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3", "INSERT", "SELECT")


# --- what every fault must show --------------------------------------------------------


@dataclass
class StatementLog:
    """Write statements the store ran (ok) and the one that failed, in the faulty attempt."""

    ran: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "after_cursor_execute", self._ran)
        event.listen(engine, "handle_error", self._failed)

    def detach(self, engine: Engine) -> None:
        event.remove(engine, "after_cursor_execute", self._ran)
        event.remove(engine, "handle_error", self._failed)

    def _ran(self, _c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            self.ran.append(statement.split("(")[0].strip())

    def _failed(self, context: Any) -> None:
        self.failed.append((context.statement or "").split("(")[0].strip())

    def mid_write(self) -> bool:
        """The failure came after the records of the batch were inserted."""
        return bool(self.failed) and any(
            s.upper().startswith("INSERT INTO RECORDS") for s in self.ran
        )


def snapshot(world: World) -> tuple[Any, ...]:
    with world.store.engine.connect() as conn:
        counts = conn.execute(
            select(
                select(func.count()).select_from(records).scalar_subquery(),
                select(func.count()).select_from(merkle_hashes).scalar_subquery(),
            )
        ).one()
    return (world.store.last_seq(), tuple(counts), world.store.projection_rows())


def check_refusal(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("retry-after") == "1"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "STORE_UNAVAILABLE", "retryable": True}
    assert "retry" in error["message"] and "nothing of this batch was kept" in error["message"]
    for leak in LEAKS:
        assert leak not in response.text, (leak, response.text)


@dataclass
class Api:
    world: World
    signer: Signer
    token: str
    app: Any
    made: int = 0

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://l")

    def batch(self) -> list[Signed]:
        """40 new lots, and part of the first one disposed of (a record on an existing lot)."""
        n = self.made
        self.made += 1
        s = self.signer
        first = s.record(
            "create",
            {"lot": f"lot:f{n}-0", "material": "steel.hms1", "mass_g": 9_000, "origin": "virgin"},
        )
        out = [first]
        for k in range(1, 40):
            body = {"lot": f"lot:f{n}-{k}", "material": "paper.occ", "mass_g": 100 + k}
            out.append(s.record("create", {**body, "origin": "post_consumer"}))
        dispose = {"lot": f"lot:f{n}-0", "mass_g": 10, "method": "landfill"}
        out.append(s.record("dispose", dispose, {f"lot:f{n}-0": hash_of(first)}))
        return out


def make_api(url: str) -> Api:
    world = make_world(url)
    signer = world.admit("org:faulty", ["recycler"])
    token = issue_token(world.store.engine, signer.actor)
    return Api(world, signer, token, create_app(world.store, token_ttl=0))


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    made = make_api(db_url)
    yield made
    made.world.store.close()


@pytest.fixture
def pg_api(pg_url: str) -> Iterator[Api]:
    made = make_api(pg_url)
    yield made
    made.world.store.close()


class Fault:
    """Armed, the next write fails mid-way; ``during`` runs a request while it strikes."""

    name = ""

    def arm(self) -> None: ...

    def disarm(self) -> None: ...

    async def during(self, request: Awaitable[T]) -> T:
        return await request

    def close(self) -> None: ...


async def exercise(api: Api, fault: Fault) -> int:
    """The raw answer, nothing kept, then the SDK's retry; returns the faults struck."""
    store = api.world.store
    batch = api.batch()
    events = [{"envelope": r.envelope, "signature": r.signature} for r in batch]
    before = snapshot(api.world)
    log = StatementLog()
    log.attach(store.engine)
    fault.arm()
    try:
        async with api.http() as http:
            response = await fault.during(
                http.post(
                    "/graphql",
                    json={"query": RECORD, "variables": {"events": events}},
                    headers={"Authorization": f"Bearer {api.token}"},
                )
            )
    finally:
        fault.disarm()
        log.detach(store.engine)
    check_refusal(response)
    assert log.mid_write(), (log.ran, log.failed)
    assert snapshot(api.world) == before, "the failed write left something behind"

    # The SDK meets the same fault, waits (the fault clears meanwhile) and sends the same batch.
    retries = []

    async def waited(seconds: float) -> None:
        retries.append(seconds)
        fault.disarm()

    fault.arm()
    try:
        async with api.http() as http:
            client = AsyncLedgerClient(
                client=http, token=api.token, retry=RetryPolicy(attempts=3), sleep=waited
            )
            results = await fault.during(client.submit(batch))
    finally:
        fault.disarm()
    assert len(retries) == 1 and retries[0] >= 1.0  # Retry-After: 1 was honoured
    assert all(isinstance(r, Recorded) and not r.existing for r in results), results
    assert store.last_seq() == before[0] + len(batch)
    report = verify_store(store)
    assert report.ok, str(report)
    return 2


# --- the faults ------------------------------------------------------------------------


class SqliteFull(Fault):
    """After the records INSERT the file may not grow by another page: SQLITE_FULL."""

    name = "full disk mid-write (SQLite, SQLITE_FULL)"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.armed = False
        with engine.connect() as conn:
            self.default = int(conn.exec_driver_sql("PRAGMA max_page_count").scalar_one())
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "after_cursor_execute", self._after)

    def arm(self) -> None:
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def _begin(self, conn: Any) -> None:
        if not self.armed:  # room again (a connection keeps its limit from the failed try)
            conn.exec_driver_sql(f"PRAGMA max_page_count = {self.default}")

    def _after(self, _c: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self.armed and statement.lstrip().upper().startswith("INSERT INTO RECORDS"):
            db = cursor.connection
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages}").fetchall()  # the disk is full now

    def close(self) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "after_cursor_execute", self._after)


class PostgresDiskFull(Fault):
    """A trigger on lots raises SQLSTATE 53100 as PostgreSQL does when it can't extend a file."""

    name = "full disk mid-write (PostgreSQL, SQLSTATE 53100 disk_full)"

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with self.engine.connect() as conn:
            conn.execute(text("CREATE TABLE fault_switch (armed boolean NOT NULL)"))
            conn.execute(text("INSERT INTO fault_switch VALUES (false)"))
            conn.execute(
                text(
                    """
CREATE FUNCTION fault_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT armed FROM fault_switch) THEN
    RAISE EXCEPTION 'could not extend file "base/16384/16397": No space left on device'
      USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
  END IF;
  RETURN NEW;
END $$"""
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER fault_disk_full BEFORE INSERT ON lots "
                    "FOR EACH ROW EXECUTE FUNCTION fault_disk_full()"
                )
            )

    def _set(self, armed: bool) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("UPDATE fault_switch SET armed = :a"), {"a": armed})

    def arm(self) -> None:
        self._set(True)

    def disarm(self) -> None:
        self._set(False)

    def close(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("DROP TRIGGER fault_disk_full ON lots"))
            conn.execute(text("DROP FUNCTION fault_disk_full()"))
            conn.execute(text("DROP TABLE fault_switch"))
        self.engine.dispose()


class PostgresTerminated(Fault):
    """The writer's backend is terminated while its INSERT INTO lots waits on a lock."""

    name = "dropped database connection mid-write (PostgreSQL, pg_terminate_backend)"

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.terminated: list[int] = []

    def _terminate_when_blocked(self) -> None:
        with self.engine.connect() as holder, self.engine.connect() as admin:
            holder.execute(text("LOCK TABLE lots IN SHARE MODE"))  # held until the rollback
            self._ready.set()
            deadline = time.monotonic() + 30
            pid = None
            while pid is None and time.monotonic() < deadline:
                pid = admin.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO lots%'"
                    )
                ).scalar()
                admin.commit()
                if pid is None:
                    time.sleep(0.005)  # polling pg_stat_activity: there is no event to await
            assert pid is not None, "the write never reached INSERT INTO lots"
            admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            admin.commit()
            self.terminated.append(pid)
            holder.rollback()

    async def during(self, request: Awaitable[T]) -> T:
        self._ready = threading.Event()
        terminator = asyncio.create_task(asyncio.to_thread(self._terminate_when_blocked))
        await asyncio.to_thread(self._ready.wait, 30)  # the lock is held before the write starts
        answer = asyncio.ensure_future(request)
        await terminator
        return await answer

    def close(self) -> None:
        self.engine.dispose()


async def exercise_and_tally(api: Api, fault: Fault) -> None:
    try:
        struck = await exercise(api, fault)
    finally:
        fault.close()
    tally(
        fault.name,
        tried=struck,
        held=struck,
        unit="faults",
        note="503 STORE_UNAVAILABLE retryable, nothing kept, the SDK's retry recorded all",
    )


@pytest.mark.anyio
async def test_a_full_disk_mid_write_is_retryable_and_keeps_nothing(api: Api) -> None:
    engine = api.world.store.engine
    fault = (
        SqliteFull(engine) if engine.dialect.name == "sqlite" else PostgresDiskFull(api.world.url)
    )
    await exercise_and_tally(api, fault)


@pytest.mark.anyio
async def test_a_dropped_connection_mid_write_is_retryable_and_keeps_nothing(pg_api: Api) -> None:
    await exercise_and_tally(pg_api, PostgresTerminated(pg_api.world.url))


@pytest.mark.anyio
async def test_idle_connections_terminated_between_batches(pg_url: str) -> None:
    """PostgreSQL restarted (or a proxy timed out) while the server idled: the next batch
    is answered at once, without a retryable refusal (the store replaces its dropped
    writer connection at the lock statement, before anything is written), and written once."""
    api = make_api(pg_url)
    world = api.world
    try:
        retries: list[float] = []

        async def waited(seconds: float) -> None:
            retries.append(seconds)

        async with api.http() as http:
            client = AsyncLedgerClient(client=http, token=api.token, sleep=waited)
            first = await client.submit(api.batch())
            killer = create_engine(pg_url, isolation_level="AUTOCOMMIT")
            with killer.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            killer.dispose()
            assert killed >= 1
            batch = api.batch()
            second = await client.submit(batch)
        assert all(isinstance(r, Recorded) and not r.existing for r in [*first, *second])
        assert retries == []
        ids = [r.id for r in second if isinstance(r, Recorded)]
        with world.store.engine.connect() as conn:
            stored = conn.execute(
                select(func.count()).select_from(records).where(records.c.id.in_(ids))
            ).scalar_one()
        assert stored == len(batch)
        assert verify_store(world.store).ok
        tally(
            "database connections terminated while idle (PostgreSQL)",
            tried=1,
            held=1,
            unit="faults",
            note=f"the next batch written once ({len(retries)} retryable refusal before it)",
        )
    finally:
        world.store.close()
