"""The lock-free checks of a batch, run in verify worker processes.

With ``Store(verify_processes=N)`` each record's bytes and signature go to a
worker, which runs the whole of :func:`ledger.envelope.parse_envelope`
(RFC 8785 canonical form, shape) and verifies the Ed25519 signature under
the key the envelope names. The writer process then rebuilds the accepted
envelopes with :func:`ledger.envelope.checked_envelope` (one plain
``json.loads``) and keeps its core for the rules and the writes; see
docs/adr/0002-single-sequencer.md.

Only bytes, strings and tuples cross the process boundary. A worker reads
public keys by id from the database itself: a key id is the SHA-256 of the
key, so a cached key never goes stale. Whether the key was *valid* for the
actor at the record's time is the rules' business, under the writer lock; a
key the worker can't find yet (added earlier in the same batch) is left for
the writer to check (``None``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ledger.database import make_engine
from ledger.envelope import parse_envelope
from ledger.errors import RecordRefused
from ledger.rows import public_keys_by_id
from ledger.signing import Ed25519PublicKey, decode_signature, verify

# One of: ("ok", True | False | None) — signature good, bad, or key not yet known;
# ("refused", code, message, path, record_id).
Outcome = tuple[Any, ...]

_engines: dict[str, Engine] = {}
_keys: dict[str, Ed25519PublicKey] = {}
MAX_CACHED_KEYS = 100_000


def check_chunk(url: str, items: list[tuple[bytes, str]]) -> list[Outcome]:
    """Parse and verify each (envelope bytes, signature); one outcome per item, in order."""
    out: list[Outcome] = []
    parsed: list[tuple[int, Any, bytes]] = []
    for i, (data, signature) in enumerate(items):
        env = None
        try:
            env = parse_envelope(data)
            sig = decode_signature(signature)
        except RecordRefused as exc:
            exc.for_record(env.id if env is not None else None)
            out.append(("refused", exc.code, exc.message, exc.path, exc.record_id))
            continue
        out.append(("ok", None))
        parsed.append((i, env, sig))
    if parsed:
        _load_keys(url, {env.key for _, env, _ in parsed})
    for i, env, sig in parsed:
        key = _keys.get(env.key)
        out[i] = ("ok", None if key is None else verify(key, sig, env.canonical))
    return out


def outcome_refusal(outcome: Outcome) -> RecordRefused:
    _, code, message, path, record_id = outcome
    return RecordRefused(code, message, path=path, record_id=record_id)


def _load_keys(url: str, wanted: set[str]) -> None:
    missing = wanted - _keys.keys()
    if not missing:
        return
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    if len(_keys) > MAX_CACHED_KEYS:
        _keys.clear()
    with engine.connect() as conn:
        _keys.update(public_keys_by_id(conn, missing))
