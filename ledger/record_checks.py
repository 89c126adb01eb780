"""The checks of one record that need no ledger state, for ``verify`` and archive import.

Everything here looks at one record's own bytes: that they are a canonical,
well-shaped envelope (RFC 8785 via :func:`ledger.envelope.parse_envelope`),
that the hash kept beside them is theirs, that the stored columns say what
the envelope says, and — given the public key the envelope names — whether
the Ed25519 signature verifies. Whether that key was registered to the actor
and valid at the record's time, the ``parents`` links and the mass balance
need the state of every record before it: that replay stays in one process,
in sequence order (ledger/verify.py).

So :func:`check_stored_range` (and :func:`check_archived` for an archive's
lines) run in verify worker processes, many records at a time; only bytes,
strings and tuples cross the process boundary. A worker's answer for a
record is a :data:`Checked` tuple: its sequence number, its
``recorded_at``, the first problem found (the text ``verify`` reports) or
``None``, the signature verdict (``True``/``False``, or ``None`` when the
worker had no key for it, so the replay checks it itself) and the envelope's
fields, which the replay turns back into an :class:`Envelope` without
parsing again.

Public keys: a key id is the SHA-256 of the key (ledger/signing.py), so a key
is only ever used under the id it hashes to, whatever source it came from —
the ``keys`` table (read by id, like ledger/prepare.py), a ``key.add`` or the
genesis record earlier in the same chunk, or the keys the replay passes in.
A key that disagrees with its id is ignored, so a tampered ``keys`` row can
only send the check back to the replay, never make a bad signature pass. The
replay accepts a worker's verdict only after checking that the key its state
holds for the record has that same id.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

from sqlalchemy import Engine

from ledger.database import make_engine, placeholder
from ledger.envelope import Envelope, parse_envelope
from ledger.errors import RecordRefused
from ledger.signing import (
    Ed25519PublicKey,
    b64url_decode,
    decode_signature,
    key_id,
    load_public_key,
    record_hash,
    verify,
)

# (seq, recorded_at, problem, signature verdict, signature text, envelope fields or None)
Checked = tuple[int, str, str | None, bool | None, str, tuple[Any, ...] | None]

COLUMNS = ("id", "type", "actor", "key", "at")
MAX_CACHED_KEYS = 100_000

_engines: dict[str, Engine] = {}
_keys: dict[str, Ed25519PublicKey] = {}  # key id -> key, only keys that hash to their id


def envelope_fields(env: Envelope) -> tuple[Any, ...]:
    """What :func:`envelope_from_fields` rebuilds the envelope from (no parsing)."""
    return (
        env.id,
        env.type,
        env.actor,
        env.key,
        env.at,
        env.parents,
        env.body,
        env.canonical,
        env.hash,
    )


def envelope_from_fields(fields: tuple[Any, ...]) -> Envelope:
    return Envelope(*fields)


def check_bytes(
    canonical: bytes, kept_hash: str, columns: Mapping[str, str] | None, where: str
) -> tuple[str | None, Envelope | None]:
    """The envelope in ``canonical``, or the problem ``verify`` names: not a canonical
    envelope, a kept hash (``where``: "stored", "archived") that is not the bytes' hash,
    or a stored column that disagrees with the envelope."""
    try:
        env = parse_envelope(canonical)
    except RecordRefused as exc:
        return f"{where} bytes are not a valid canonical envelope ({exc.code})", None
    if record_hash(canonical) != kept_hash:
        return f"{where} hash does not match the record's bytes", None
    if columns is not None:
        for name in COLUMNS:
            if getattr(env, name) != columns[name]:
                return f"stored column {name} disagrees with the signed envelope", None
    return None, env


def signature_verdict(env: Envelope, signature: str) -> bool | None:
    """Whether ``signature`` verifies under the key ``env`` names, if this process holds
    that key (``None`` if not)."""
    key = _keys.get(env.key)
    if key is None:
        return None
    try:
        sig = decode_signature(signature)
    except RecordRefused:
        return False
    return verify(key, sig, env.canonical)


def learn_keys(raw_keys: Iterable[bytes]) -> None:
    """Remember public keys by the id each hashes to (anything not 32 bytes is skipped)."""
    if len(_keys) > MAX_CACHED_KEYS:
        _keys.clear()
    for raw in raw_keys:
        if isinstance(raw, bytes) and len(raw) == 32:
            kid = key_id(raw)
            if kid not in _keys:
                try:
                    _keys[kid] = load_public_key(raw)
                except ValueError:
                    continue


def _learn_from(env: Envelope) -> None:
    """A key a record of this chunk registers (``key.add``, or the genesis record's own),
    for the records after it."""
    if env.type in ("key.add", "org.register"):
        text = env.body.get("public_key")
        if isinstance(text, str):
            with suppress(ValueError):
                learn_keys([b64url_decode(text)])


def _check_one(
    seq: int,
    recorded_at: str,
    canonical: bytes,
    kept_hash: str,
    columns: Mapping[str, str] | None,
    signature: str,
    where: str,
    signatures: bool,
) -> Checked:
    problem, env = check_bytes(canonical, kept_hash, columns, where)
    if env is None:
        return (seq, recorded_at, problem, None, signature, None)
    if not signatures:
        return (seq, recorded_at, None, None, signature, envelope_fields(env))
    verdict = signature_verdict(env, signature)
    _learn_from(env)
    return (seq, recorded_at, None, verdict, signature, envelope_fields(env))


# --- in a worker: a range of stored records --------------------------------------------


def _engine(url: str) -> Engine:
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def read_stored(engine: Engine, first: int, count: int) -> list[tuple[Any, ...]]:
    """Up to ``count`` stored records from seq ``first`` on, in order (driver-level SQL):
    (seq, id, hash, type, actor, key, at, recorded_at, canonical, sig)."""
    m = placeholder(engine)
    sql = (
        "SELECT seq, id, hash, type, actor, key, at, recorded_at, canonical, sig FROM records "
        f"WHERE seq >= {m} ORDER BY seq LIMIT {m}"
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql, (first, count))]


def _load_stored_keys(engine: Engine, wanted: set[str]) -> None:
    missing = sorted(k for k in wanted if k not in _keys)
    if not missing:
        return
    m = placeholder(engine)
    found: list[bytes] = []
    with engine.connect() as conn:
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            sql = f"SELECT public_key FROM keys WHERE id IN ({', '.join([m] * len(chunk))})"
            found.extend(bytes(r[0]) for r in conn.exec_driver_sql(sql, tuple(chunk)))
    learn_keys(found)  # each under the id it hashes to: a tampered row is simply not used


def check_stored_range(url: str, first: int, count: int) -> list[Checked]:
    """Read up to ``count`` records from seq ``first`` on and check each (in a worker).

    The rows come back as they are stored, gaps included: the replay, which
    knows which seq comes next, names a gap.
    """
    engine = _engine(url)
    rows = read_stored(engine, first, count)
    _load_stored_keys(engine, {r[5] for r in rows if isinstance(r[5], str)})
    return [check_stored_row(row, signatures=True) for row in rows]


def check_stored_row(row: tuple[Any, ...], *, signatures: bool) -> Checked:
    seq, rid, rhash, rtype, actor, key, at, recorded_at, canonical, sig = row
    columns = {"id": rid, "type": rtype, "actor": actor, "key": key, "at": at}
    return _check_one(
        int(seq), recorded_at, bytes(canonical), rhash, columns, sig, "stored", signatures
    )


# --- in a worker: an archive's records -------------------------------------------------


def check_archived(
    rows: list[tuple[int, str, str, bytes, str]],
    known_keys: list[bytes],
    *,
    signatures: bool = True,
) -> list[Checked]:
    """Check an archive's records (seq, recorded_at, hash, envelope bytes, signature), with
    the public keys the replay knows so far (``known_keys``) and those the chunk adds
    (``signatures=False``: leave every signature to the replay)."""
    if signatures:
        learn_keys(known_keys)
    return [
        _check_one(seq, recorded_at, data, rhash, None, sig, "archived", signatures)
        for seq, recorded_at, rhash, data, sig in rows
    ]


def warm_up() -> None:
    """Nothing: submitted once per worker so that the pool's processes start up front."""


WORKER_NICE = 10


def lower_priority() -> None:
    """The initializer of verify's worker processes: they run at a lower priority than the
    replay, which is sequential and so the critical path. With as many workers as cores,
    the replay keeps its core and the workers share what is left (at equal priority three
    processes on two cores would give the replay two thirds of one)."""
    with suppress(OSError, AttributeError):
        os.nice(WORKER_NICE)
