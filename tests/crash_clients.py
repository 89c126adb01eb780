"""Servers to kill and clients to race, for the crash-safety and concurrency tests (issue 8/8).

Servers (:func:`forked_server`): ``rledger serve`` — the CLI's own ``main`` —
in a child of a multiprocessing *forkserver* that has imported the service
once, so a restart after ``kill -9`` costs a fork and the app's start, not a
Python start (about two seconds of imports per restart would otherwise make
a dozen kills too slow for CI). The child calls ``setsid``, so it leads a
process group of its own: :meth:`ForkedServer.kill9` sends SIGKILL to the
whole group, and checks that the server died of it. With ``workers=2``
uvicorn's worker processes are forked from the server process rather than
spawned afresh (the same code, started in milliseconds, not seconds). With ``checkpointer``
the server first forks a process into its group that runs SQLite WAL
checkpoints (PASSIVE, FULL, RESTART, TRUNCATE in turn) against the same
file without pause, so the kill also lands while checkpoints copy the WAL
into the database and reset it.

Workloads (:class:`Workload`): one client's chain of batches, each depending
on the one before it (batch n disposes of part of a lot batch n-1 split off),
signed once so that a retry sends the very same bytes.

Race clients (:func:`race_client`): a client *process* that reads the shared
lots over the API and spends, splits, transfers or receives one of them,
driven by the test through a pipe (``round``: read, say ready, wait for
``go``, write — so every process of a round read the same head; ``free``:
a number of operations at its own pace).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
import reliability

from ledger.signing import Ed25519PrivateKey, record_hash
from ledger.store import Signed
from producers.client import LedgerClient, Recorded, Rejected, RetryableError, RetryPolicy
from producers.events import Signer

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
PRELOAD = ["crash_clients", "producers.cli", "schema.app", "uvicorn", "psycopg", "pytest"]


def fixed_key(name: str) -> Ed25519PrivateKey:
    """The same fixed test keys as conftest.fixed_key (a process of ours can't import conftest)."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"rledger-test:" + name.encode()).digest()
    )


_context: Any = None


def tally(row: str, *, tried: int, held: int, unit: str, note: str = "") -> None:
    """:func:`reliability.tally`, and the figures printed (``pytest -rP`` shows them)."""
    reliability.tally(row, tried=tried, held=held, unit=unit, note=note)
    print(f"{row}: {held:,} of {tried:,} {unit} held; {note}")


def forkserver() -> Any:
    """The multiprocessing context whose server has imported the service (started once)."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


# --- servers -------------------------------------------------------------------------


def _die_with_parent(sig: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


def _checkpoint_forever(db_path: str) -> None:
    """Run WAL checkpoints of every kind against ``db_path`` until killed."""
    conn = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    modes = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")
    n = 0
    while True:
        with contextlib.suppress(sqlite3.OperationalError):  # busy past the timeout: go on
            conn.execute(f"PRAGMA wal_checkpoint({modes[n % 4]})").fetchall()
        n += 1
        time.sleep(0.002)  # pacing only: leave the writer some CPU


def _serve_child(args: list[str], log_path: str, checkpoint_db: str | None) -> None:
    """In the forked child: lead a new process group, then run ``rledger serve``."""
    os.setsid()
    _die_with_parent(signal.SIGKILL)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # stdin on fd 0 again (multiprocessing moved it): uvicorn hands fd 0 to its workers.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's stdin until it ends
    if checkpoint_db is not None and os.fork() == 0:  # in the server's group, before any thread
        _die_with_parent(signal.SIGKILL)
        _checkpoint_forever(checkpoint_db)
        os._exit(0)
    # uvicorn starts --workers with "spawn", a fresh Python that imports everything again
    # (seconds per worker on a busy 2-core machine): fork them from this process instead,
    # which has imported it all and runs no thread yet. The workers run the same code.
    import uvicorn._subprocess

    uvicorn._subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]
    from producers.cli import main

    main(args, standalone_mode=False)


@dataclass
class ForkedServer:
    url: str
    process: BaseProcess
    log_path: Path

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def group(self) -> list[int]:
        """The pids in the server's process group (Linux /proc): the server, its workers."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ")"
                    if int(stat.rsplit(")", 1)[1].split()[2]) == self.pid:
                        found.append(int(entry.name))
        return sorted(found)

    def kill9(self) -> None:
        """SIGKILL to the server's whole process group; wait until it is dead of it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.join(30)
        if self.process.exitcode != -signal.SIGKILL:
            raise AssertionError(
                f"the server exited with {self.process.exitcode}, not by SIGKILL\n{self.log()}"
            )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _healthy(server: ForkedServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0) as http:
        while True:
            if not server.process.is_alive():
                raise RuntimeError(f"rledger serve exited before /health answered:\n{server.log()}")
            with contextlib.suppress(httpx.TransportError):
                if http.get(server.url + "/health").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"rledger serve did not answer /health:\n{server.log()}")
            time.sleep(0.01)  # polling a socket that has no event to wait on


def start_server(
    db_url: str,
    log_dir: Path,
    *,
    workers: int = 1,
    checkpoint_db: str | None = None,
    attempts: int = 3,
) -> ForkedServer:
    """``rledger serve --db db_url --workers N`` on a free port, in its own process group
    (uvicorn's worker processes too), once healthy."""
    ctx = forkserver()
    for attempt in range(attempts):
        port = _free_port()
        log_path = log_dir / f"serve-{port}.log"
        args = ["serve", "--db", db_url, "--host", HOST, "--port", str(port)]
        args += ["--workers", str(workers), "--verify-processes", "0", "--checkpoint-every", "0"]
        process = ctx.Process(target=_serve_child, args=(args, str(log_path), checkpoint_db))
        process.start()
        server = ForkedServer(f"http://{HOST}:{port}", process, log_path)
        try:
            _healthy(server)
            return server
        except RuntimeError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            process.join(30)
            if attempt + 1 < attempts and "address already in use" in server.log().lower():
                continue
            raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def forked_server(db_url: str, log_dir: Path, **kwargs: Any) -> Iterator[ForkedServer]:
    server = start_server(db_url, log_dir, **kwargs)
    try:
        yield server
    finally:
        if server.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.process.join(30)


# --- one client's chain of batches --------------------------------------------------


@dataclass
class Batch:
    number: int
    records: list[Signed]
    ids: list[str]
    hashes: list[str]
    atomic: bool
    lots: list[str]  # lots the batch creates


def hash_of(record: Signed) -> str:
    data = record.envelope.encode() if isinstance(record.envelope, str) else record.envelope
    return record_hash(data)


def _id_of(record: Signed) -> str:
    import json

    text = record.envelope if isinstance(record.envelope, str) else record.envelope.decode()
    rid: str = json.loads(text)["id"]
    return rid


@dataclass
class Workload:
    """Batch n: create ``P-n`` and split it into ``P-na``/``P-nb``; dispose of part of
    ``P-(n-1)b`` (its head: the split, or nothing else); and 0-6 small creates so batches
    differ in size. Odd batches are atomic."""

    signer: Signer
    prefix: str
    rng: random.Random
    made: int = 0
    _prev_b: tuple[str, str, int] | None = None  # (lot, head, grams) to dispose from

    def next_batch(self) -> Batch:
        n = self.made
        self.made += 1
        s, p = self.signer, f"{self.prefix}-{n}"
        mass = self.rng.randrange(10_000, 1_000_000)
        records: list[Signed] = []
        create = s.record(
            "create",
            {"lot": p, "material": "steel.hms1", "mass_g": mass, "origin": "post_consumer"},
        )
        half = mass // 2
        parts = [{"lot": f"{p}a", "mass_g": half}, {"lot": f"{p}b", "mass_g": mass - half}]
        split = s.record("split", {"lot": p, "parts": parts}, {p: hash_of(create)})
        records += [create, split]
        if self._prev_b is not None:
            lot, head, grams = self._prev_b
            dispose = {"lot": lot, "mass_g": self.rng.randrange(1, grams), "method": "landfill"}
            records.append(s.record("dispose", dispose, {lot: head}))
        lots = [p, f"{p}a", f"{p}b"]
        for k in range(self.rng.randrange(0, 7)):
            body = {"lot": f"{p}x{k}", "material": "paper.occ", "mass_g": 1_000 + k}
            records.append(s.record("create", {**body, "origin": "post_consumer"}))
            lots.append(f"{p}x{k}")
        self._prev_b = (f"{p}b", hash_of(split), mass - half)
        return Batch(
            n,
            records,
            [_id_of(r) for r in records],
            [hash_of(r) for r in records],
            n % 2 == 1,
            lots,
        )


# --- race clients ------------------------------------------------------------------

LIVE = """
query Live($first: Int!) {
  active: lots(filter: {status: "active"}, first: $first) {
    edges { node { id remainingG head status custodian { id } inTransitTo { id } } } }
  moving: lots(filter: {status: "in_transit"}, first: $first) {
    edges { node { id remainingG head status custodian { id } inTransitTo { id } } } }
}"""


@dataclass
class RaceConfig:
    url: str
    client: int
    seed: int
    orgs: dict[str, str]  # org -> its token (the token writes only as its org)
    reader: str  # a regulator's token: reads every lot
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def _live(http: LedgerClient) -> list[dict[str, Any]]:
    data = http.query(LIVE, {"first": 500}, retry=True)
    lots = [e["node"] for key in ("active", "moving") for e in data[key]["edges"]]
    return sorted(lots, key=lambda lot: lot["id"])


def _operation(
    lot: dict[str, Any], signers: dict[str, Signer], rng: random.Random, fresh: Iterator[str]
) -> tuple[str, str, Signed]:
    """A record valid against the lot as read: (org, kind, record)."""
    parents = {lot["id"]: lot["head"]}
    grams = int(lot["remainingG"])
    if lot["status"] == "in_transit":
        receiver = lot["inTransitTo"]["id"]
        weighed = grams - rng.randrange(0, min(grams, 100))
        body = {"lot": lot["id"], "mass_g": weighed}
        return receiver, "receive", signers[receiver].record("receive", body, parents)
    holder = lot["custodian"]["id"]
    signer = signers[holder]
    kinds = ["dispose", "transfer"] + (["split", "split"] if grams >= 2 else [])
    kind = rng.choice(kinds)
    if kind == "split":
        first = rng.randrange(1, grams)
        parts = [
            {"lot": next(fresh), "mass_g": first},
            {"lot": next(fresh), "mass_g": grams - first},
        ]
        return holder, kind, signer.record("split", {"lot": lot["id"], "parts": parts}, parents)
    if kind == "transfer":
        to = next(o for o in signers if o != holder)
        body = {"lot": lot["id"], "to": to, "mass_g": grams}
        return holder, kind, signer.record("transfer", body, parents)
    spend = rng.randrange(1, max(2, grams // 5 + 1))
    body = {"lot": lot["id"], "mass_g": min(spend, grams), "method": "incineration"}
    return holder, kind, signer.record("dispose", body, parents)


def _submit(clients: dict[str, LedgerClient], org: str, record: Signed) -> dict[str, Any]:
    [result] = clients[org].submit([record])
    if isinstance(result, Recorded):
        return {"won": True, "id": result.id, "hash": result.hash, "seq": result.seq}
    assert isinstance(result, Rejected)
    return {"won": False, "code": result.code, "message": result.message}


def race_client(conn: Connection, config: RaceConfig) -> None:
    """A client process: ``("round", k)`` — read, send "ready", wait for "go", write the
    k-th live lot (the same for every process), send the outcome; ``("free", n, hot)`` —
    n operations on a random one of the first ``hot`` live lots, then the outcomes;
    ``("quit",)``."""
    rng = random.Random(config.seed)
    signers = {org: Signer(org, fixed_key(org)) for org in config.orgs}
    counter = iter(range(1_000_000))
    fresh = (f"lot:c{config.client}-{n}-{rng.randrange(10**6)}" for n in counter)
    policy = RetryPolicy(attempts=8, base_delay=0.05, max_delay=1.0)
    clients = {o: LedgerClient(config.url, t, retry=policy) for o, t in config.orgs.items()}
    reader = LedgerClient(config.url, config.reader, retry=policy)
    try:
        while True:
            command = conn.recv()
            if command[0] == "quit":
                return
            if command[0] == "round":
                lots = _live(reader)
                lot = lots[command[1] % len(lots)]
                org, kind, record = _operation(lot, signers, rng, fresh)
                conn.send(("ready", lot["id"], lot["head"]))
                if conn.recv() != "go":
                    return
                outcome = _submit(clients, org, record)
                conn.send({**outcome, "kind": kind, "lot": lot["id"], "parent": lot["head"]})
            elif command[0] == "free":
                _, n, hot = command
                outcomes = []
                for _ in range(n):
                    lots = _live(reader)[:hot]
                    if not lots:
                        break
                    lot = rng.choice(lots)
                    org, kind, record = _operation(lot, signers, rng, fresh)
                    outcome = _submit(clients, org, record)
                    outcomes.append({**outcome, "kind": kind, "lot": lot["id"]})
                conn.send(outcomes)
    except RetryableError as exc:  # the test fails on this: say why
        conn.send(("error", str(exc)))
    finally:
        for c in [*clients.values(), reader]:
            c.close()
