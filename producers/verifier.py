"""The independent verifier: checks a provenance bundle with public data alone (no database).

A bundle (docs/bundle-format.md; made by ledger/provenance.py, served by ``provenance(lot)``)
claims that a lot's recovered content follows from a set of signed records that the ledger's
log holds. :func:`verify_bundle` believes none of it; with nothing but the ledger's verifier
key it checks, in this order, and stops at the first failure with a reason naming the record:

1. **the checkpoint**: its signed note verifies under the pinned verifier key
   (c2sp.org/signed-note, c2sp.org/tlog-checkpoint; ledger/checkpoints.py), and the bundle's
   copies of its size and root say what the note says;
2. **every record**: its envelope is canonical RFC 8785 text of a well-formed record
   (ledger/canonical.py, ledger/envelope.py), its hash is the SHA-256 of those bytes, its
   index is ``seq - 1``, and its RFC 9162 inclusion proof leads from its leaf to the signed
   root (ledger/merkle.py) — so its seq and bytes are the ones the log committed to;
3. **the genesis record** comes first (seq 1: the operator's key), then **each lot's
   ``parents`` chain**: every record that changes a lot names, as that lot's parent, the
   bundle's previous record of the lot (DESIGN.md "Records"), so no record of a lot is
   missing or forked; the bundle's ``chains`` must say the same;
4. **signatures and key validity**, replaying the registry records (``org.register``,
   ``key.add``, ``key.revoke``) in ledger order: Ed25519 over the canonical bytes, by a key
   registered to the record's actor before it, not revoked before it, within its validity;
5. **the rules**: every record replayed through ledger/rules.py on a
   :class:`~ledger.state.MemoryState` — mass balance, lot states, element limits, recovered
   content by the proportional model — exactly as the ledger applied it when it was written;
6. **the claims**: the lineage's flows are the flows the replay makes, every lot made by a
   split, merge or transform weighs exactly what flowed into it, each listed lot is the one
   its records make, the keys are the ones the registry records give, and the lot's recovered
   content as the server claims it (``claim``) equals the content the replay computes.

A bundle that leaves out upstream lots the token could not read (``complete: false``) can't
prove the lot's content: every record it does hold is still checked (records that draw on a
lot it leaves out can't be replayed; their signatures, keys, chains and inclusion still are),
and the result says so. :func:`verify_bundle` refuses such a bundle unless
``allow_incomplete``. Whether a bundle is complete is itself checked, not believed: it is
complete when every lot any of its records changes has its whole history in it.

Fails closed: any member missing or of the wrong type, a duplicated JSON member, a float —
anything unexpected — is a failure, never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import merkle, rules
from ledger.checkpoints import CheckpointError, parse_verifier_key, verify_checkpoint
from ledger.envelope import AT_RE, Envelope, parse_at, parse_envelope
from ledger.errors import RecordRefused
from ledger.signing import b64url_encode, decode_signature, load_public_key, verify
from ledger.state import MemoryState
from ledger.tlog_proof import TlogProofError, decode_hash

FORMAT = "recovery-ledger/provenance@v1"
MADE_BY_FLOWS = frozenset({"split", "merge", "transform"})
# The members of each object (docs/bundle-format.md): no more, no fewer. A member the verifier
# does not check is a member a forger could use, so an unknown one fails.
MEMBERS = {
    "the bundle": frozenset(
        {"format", "lot", "complete", "truncated", "hiddenByAccess", "claim", "checkpoint"}
        | {"records", "chains", "keys", "lots", "flows"}
    ),
    "the bundle's claim": frozenset(
        {"lot", "material", "massG", "recoveredG", "preConsumerG", "postConsumerG", "content"}
        | {"head", "updatedSeq"}
    ),
    "the bundle's checkpoint": frozenset({"note", "origin", "size", "root", "time", "verifierKey"}),
    "records": frozenset(
        {"seq", "hash", "recordedAt", "envelope", "signature", "index", "inclusion"}
    ),
    "keys": frozenset(
        {"key", "org", "publicKey", "addedSeq", "validFrom", "validUntil", "revokedSeq"}
    ),
    "lots": frozenset({"lot", "material", "origin", "massG", "madeSeq", "madeBy"}),
    "flows": frozenset({"parent", "child", "seq", "massG", "elements", "recordHash"}),
}


class BundleInvalid(Exception):
    """The bundle does not verify; ``reason`` says what failed and, where one did, which
    record (by seq, type, actor and id)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verified:
    """What a bundle proved. ``content``: the lot's recovered content as the replay computed
    it (and the server claimed), or None when the bundle is incomplete; ``unreplayed``: seqs
    of records that draw on lots the bundle leaves out."""

    lot: str
    records: int
    lots: int
    origin: str
    tree_size: int
    root: str
    signed_at: int | None
    complete: bool
    content: dict[str, int] | None
    mass_g: int | None
    unreplayed: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        head = (
            f"{self.lot}: {self.records} records and {self.lots} lots, each record in "
            f"checkpoint {self.origin} of size {self.tree_size} (root {self.root[:16]}…)"
        )
        if self.content is None or self.mass_g is None:
            return (
                f"PARTIAL {head}; every record it holds checks out, but {len(self.unreplayed)} "
                "draw on lots it leaves out, so the recovered content can't be recomputed"
            )
        pre, post = self.content.get("pre", 0), self.content.get("post", 0)
        line = (
            f"ok: {head}; recovered content recomputed and as claimed: {pre + post} of "
            f"{self.mass_g} g recovered ({pre} g pre-consumer, {post} g post-consumer)"
        )
        elements = sorted(k for k in self.content if "." not in k and k not in ("pre", "post"))
        for e in elements:
            got = self.content.get(f"{e}.pre", 0) + self.content.get(f"{e}.post", 0)
            line += f"; {e} {got} of {self.content[e]} g recovered"
        return line


# --- reading the bundle, strictly --------------------------------------------------------------


def load_bundle(data: bytes | str) -> dict[str, Any]:
    """The bundle's JSON object; :class:`BundleInvalid` for anything but JSON without
    repeated members or non-integer numbers."""

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for k, v in pairs:
            if k in obj:
                raise BundleInvalid(f"the bundle repeats the member {k!r}: refusing an ambiguity")
            obj[k] = v
        return obj

    def no_float(text: str) -> Any:
        raise BundleInvalid(f"the bundle holds the number {text[:40]}: only integers are valid")

    try:
        doc = json.loads(
            data, object_pairs_hook=members, parse_float=no_float, parse_constant=no_float
        )
    except (ValueError, RecursionError) as exc:
        raise BundleInvalid(f"the bundle is not JSON text ({str(exc)[:120]})") from None
    if not isinstance(doc, dict):
        raise BundleInvalid("the bundle must be a JSON object")
    return doc


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise BundleInvalid(f"{where} lacks {key!r}")
    value = obj[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, (int,)))
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BundleInvalid(f"{where}.{key} must be {names}")
    return value


def _members(obj: Any, kind: str, where: str) -> dict[str, Any]:
    """``obj`` as an object with exactly the members of ``kind`` (:data:`MEMBERS`)."""
    if not isinstance(obj, dict):
        raise BundleInvalid(f"{where} must be an object")
    want = MEMBERS[kind]
    if extra := sorted(set(obj) - want):
        raise BundleInvalid(f"{where} has a member the format does not define: {extra[0]!r}")
    if missing := sorted(want - set(obj)):
        raise BundleInvalid(f"{where} lacks {missing[0]!r}")
    return obj


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value: int = _get(obj, key, int, where)
    if value < 0:
        raise BundleInvalid(f"{where}.{key} must not be negative")
    return value


def _grams(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise BundleInvalid(f"{where} must map names to integer grams")
    return dict(value)


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    seq: int
    env: Envelope
    signature: str
    recorded_at: str

    @property
    def label(self) -> str:
        return f"record seq {self.seq} ({self.env.type} by {self.env.actor}, id {self.env.id})"


def _records(doc: Mapping[str, Any], size: int, root: bytes) -> list[_Record]:
    """Step 2: every record well formed, hashed as named, and included in the signed tree."""
    items = _get(doc, "records", list, "the bundle")
    if not items:
        raise BundleInvalid("the bundle holds no records")
    out: list[_Record] = []
    last_seq, last_at = 0, ""
    hashes: set[str] = set()
    for i, item in enumerate(items):
        where = f"records[{i}]"
        item = _members(item, "records", where)
        seq = _int(item, "seq", where)
        if seq <= last_seq:
            raise BundleInvalid(
                f"{where}: seq {seq} follows seq {last_seq}; records are listed once each, in "
                "ledger order"
            )
        label = f"record seq {seq}"
        text = _get(item, "envelope", str, where)
        try:
            env = parse_envelope(text)
        except RecordRefused as exc:
            raise BundleInvalid(
                f"{label}: its envelope is not a canonical, well-formed record "
                f"({exc.code}: {exc.message})"
            ) from None
        label = f"record seq {seq} ({env.type} by {env.actor}, id {env.id})"
        named = _get(item, "hash", str, where)
        if named != env.hash:
            raise BundleInvalid(
                f"{label}: its envelope was altered: its bytes hash to {env.hash}, but the "
                f"bundle names it {named}"
            )
        if env.hash in hashes:
            raise BundleInvalid(f"{label}: the same record appears twice")
        hashes.add(env.hash)
        index = _int(item, "index", where)
        if index != seq - 1:
            raise BundleInvalid(f"{label}: its proof index is {index}, not seq - 1 = {seq - 1}")
        lines = _get(item, "inclusion", list, where)
        try:
            path = [decode_hash(x, f"{where}.inclusion[{j}]") for j, x in enumerate(lines)]
            merkle.check_inclusion(index, size, merkle.record_leaf(env.hash), path, root)
        except (TlogProofError, merkle.ProofError) as exc:
            raise BundleInvalid(
                f"{label} is not proven to be in the log: {exc} (checkpoint of size {size})"
            ) from None
        at = _get(item, "recordedAt", str, where)
        try:
            if not AT_RE.fullmatch(at):
                raise ValueError(at)
            parse_at(at)
        except ValueError:
            raise BundleInvalid(
                f"{label}: recordedAt {at[:40]!r} is not an RFC 3339 UTC time"
            ) from None
        if at < last_at:
            raise BundleInvalid(f"{label}: recorded before the record ahead of it")
        signature = _get(item, "signature", str, where)
        out.append(_Record(seq, env, signature, at))
        last_seq, last_at = seq, at
    genesis = out[0]
    if genesis.seq != 1 or genesis.env.type != "org.register":
        raise BundleInvalid(
            "the bundle lacks the ledger's genesis record (seq 1, the operator's org.register "
            "with its public key): no key can be checked without it"
        )
    return out


def _touched(
    rec: _Record, by_hash: Mapping[str, _Record], complete: bool
) -> tuple[list[str], list[str]]:
    """(lots the record spends or changes, lots it makes); a void changes its target's lots."""
    if rec.env.type != "void":
        return rules.touched_lots(rec.env.type, rec.env.body)
    target = by_hash.get(rec.env.body["record"])
    if target is None:
        if complete:
            raise BundleInvalid(
                f"{rec.label} voids record {rec.env.body['record']}, which the bundle does not "
                "hold: a record is missing"
            )
        return sorted(rec.env.parents), []
    spent, made = rules.touched_lots(target.env.type, target.env.body)
    return [*spent, *made], []


def _chains(
    recs: Sequence[_Record], by_hash: Mapping[str, _Record], complete: bool
) -> dict[str, list[str]]:
    """Step 3: each lot's records, in order, each naming the previous one as its parent."""
    last: dict[str, _Record] = {}
    chains: dict[str, list[str]] = {}
    for rec in recs:
        spent, made = _touched(rec, by_hash, complete)
        for lot in spent:
            named = rec.env.parents.get(lot)
            prev = last.get(lot)
            if prev is None:
                if complete:
                    raise BundleInvalid(
                        f"{rec.label} changes lot {lot}, but the bundle holds no earlier record "
                        f"of {lot} (the record it names as {lot}'s latest, {named}, is missing)"
                    )
            elif named != prev.env.hash:
                raise BundleInvalid(
                    f"{rec.label} names {named} as the latest record of {lot}, but the bundle's "
                    f"previous record of {lot} is seq {prev.seq} ({prev.env.hash}): a record of "
                    f"{lot} is missing from the bundle, or its chain forks"
                )
            chains.setdefault(lot, []).append(rec.env.hash)
            last[lot] = rec
        for lot in made:
            if lot in last:
                raise BundleInvalid(
                    f"{rec.label} makes lot {lot}, which seq {last[lot].seq} already made"
                )
            chains.setdefault(lot, []).append(rec.env.hash)
            last[lot] = rec
    return chains


def _key_problem(env: Envelope, state: MemoryState, seq: int) -> str | None:
    """Step 4: was the record's key valid for its actor when it was recorded? (The rules
    check the same; this names the key and the record that registered or revoked it.)"""
    key = state.key(env.key)
    if key is None:
        return f"is signed with key {env.key}, which no key.add before it in the bundle registers"
    if key.org != env.actor:
        return (
            f"is signed with a key of {key.org} (added at seq {key.added_seq}), not of {env.actor}"
        )
    if key.revoked_seq is not None and key.revoked_seq < seq:
        return f"is signed with key {env.key}, which {key.org} revoked at seq {key.revoked_seq}"
    if key.valid_from is not None and env.at < key.valid_from:
        return f"is dated {env.at}, before its key became valid ({key.valid_from})"
    if key.valid_until is not None and env.at >= key.valid_until:
        return f"is dated {env.at}, after its key expired ({key.valid_until})"
    if state.org(env.actor) is None:
        return f"is by {env.actor}, which no org.register before it in the bundle registers"
    return None


def _replay(
    recs: Sequence[_Record], by_hash: Mapping[str, _Record], complete: bool
) -> tuple[MemoryState, set[str], list[int]]:
    """Steps 4 and 5: signatures, key validity and the rules, in ledger order. Returns the
    state, the lots the replay could not follow (made by records it could not replay) and the
    seqs of those records (both empty for a complete bundle)."""
    state = MemoryState()
    tainted: set[str] = set()
    skipped: list[int] = []
    for rec in recs:
        env = rec.env
        if not state.empty and (problem := _key_problem(env, state, rec.seq)) is not None:
            raise BundleInvalid(f"{rec.label} {problem}")
        public = rules.signing_key(env, state)
        if public is None:
            raise BundleInvalid(f"{rec.label} is signed with a key the bundle never registers")
        try:
            good = verify(load_public_key(public), decode_signature(rec.signature), env.canonical)
        except (RecordRefused, ValueError):
            good = False
        if not good:
            raise BundleInvalid(
                f"the signature of {rec.label} does not verify under its key {env.key}: the "
                "record or its signature was altered"
            )
        spent, made = _touched(rec, by_hash, complete)
        if not complete and any(x in tainted or state.lot(x) is None for x in spent):
            tainted.update(spent, made)
            skipped.append(rec.seq)
            continue
        try:
            effects = rules.apply(env, state, rec.seq, parse_at(rec.recorded_at))
        except RecordRefused as exc:
            where = f" at {exc.path}" if exc.path else ""
            raise BundleInvalid(
                f"{rec.label} breaks the ledger's rules on replay ({exc.code}{where}): "
                f"{exc.message}"
            ) from None
        state.apply(effects, rules.past_record(env, rec.seq))
    return state, tainted, skipped


# --- the claims ------------------------------------------------------------------------------


def _check_chains(claimed: Any, derived: Mapping[str, list[str]]) -> None:
    if not isinstance(claimed, dict):
        raise BundleInvalid("the bundle's chains must map lots to record hashes")
    for lot in sorted(set(claimed) | set(derived)):
        if claimed.get(lot) != derived.get(lot):
            got, said = derived.get(lot), claimed.get(lot)
            count = len(said) if isinstance(said, list) else 0
            raise BundleInvalid(
                f"the bundle's chain of {lot} lists {count} records, but "
                f"its records give {len(got or [])}"
                + ("" if got is None else f" (ending in {got[-1]})")
                + ": the chains were edited"
            )


def _check_keys(claimed: Any, state: MemoryState) -> None:
    if not isinstance(claimed, list):
        raise BundleInvalid("the bundle's keys must be a list")
    have = {
        k.id: {
            "key": k.id,
            "org": k.org,
            "publicKey": b64url_encode(k.public_key),
            "addedSeq": k.added_seq,
            "validFrom": k.valid_from,
            "validUntil": k.valid_until,
            "revokedSeq": k.revoked_seq,
        }
        for k in state.keys.values()
    }
    said: dict[str, Any] = {}
    for i, item in enumerate(claimed):
        item = _members(item, "keys", f"keys[{i}]")
        kid = _get(item, "key", str, f"keys[{i}]")
        if kid in said:
            raise BundleInvalid(f"keys[{i}]: the key {kid[:16]}… is listed twice")
        said[kid] = item
    for kid in sorted(set(have) | set(said)):
        if have.get(kid) != said.get(kid):
            raise BundleInvalid(
                f"the bundle's key {kid[:16]}… is not the key its registry records give "
                f"({'listed but never registered' if kid not in have else 'registered as ' + json.dumps(have[kid])})"
            )


def _check_flows(
    doc: Mapping[str, Any], state: MemoryState, tainted: set[str], hashes: Mapping[int, str]
) -> set[str]:
    """Step 6: the listed lots and flows are the replay's; lots made by flows weigh what
    flowed in. Returns the ids of the listed lots."""
    lots = _get(doc, "lots", list, "the bundle")
    listed: set[str] = set()
    for i, item in enumerate(lots):
        where = f"lots[{i}]"
        item = _members(item, "lots", where)
        name = _get(item, "lot", str, where)
        if name in listed:
            raise BundleInvalid(f"{where}: lot {name} is listed twice")
        listed.add(name)
        if name in tainted:
            continue
        lot = state.lot(name)
        if lot is None:
            raise BundleInvalid(f"the bundle lists lot {name}, which none of its records makes")
        said = (
            _get(item, "material", str, where),
            _get(item, "origin", str, where),
            _int(item, "massG", where),
            _int(item, "madeSeq", where),
            _get(item, "madeBy", str, where),
        )
        made = (lot.material, lot.origin, lot.mass_g, lot.created_seq, hashes[lot.created_seq])
        if said != made:
            raise BundleInvalid(
                f"the bundle says lot {name} is {said[2]} g of {said[0]} ({said[1]}) made at seq "
                f"{said[3]}, but its records make {made[2]} g of {made[0]} ({made[1]}) at seq "
                f"{made[3]}"
            )
    edges = {(e.parent, e.child, e.seq): e for e in state.edges}
    claimed: set[tuple[str, str, int]] = set()
    for i, item in enumerate(_get(doc, "flows", list, "the bundle")):
        where = f"flows[{i}]"
        item = _members(item, "flows", where)
        parent, child = _get(item, "parent", str, where), _get(item, "child", str, where)
        seq, mass = _int(item, "seq", where), _int(item, "massG", where)
        elements = _grams(_get(item, "elements", dict, where), f"{where}.elements")
        if (parent, child, seq) in claimed:
            raise BundleInvalid(f"{where}: the flow from {parent} into {child} is listed twice")
        claimed.add((parent, child, seq))
        if child in tainted:
            continue
        edge = edges.get((parent, child, seq))
        if edge is None or (edge.mass_g, edge.elements) != (mass, elements):
            found = "no such flow" if edge is None else f"{edge.mass_g} g, {edge.elements}"
            raise BundleInvalid(
                f"the bundle claims {mass} g (elements {elements}) flowed from {parent} into "
                f"{child} at seq {seq}, but its records make {found}"
            )
        if _get(item, "recordHash", str, where) != hashes.get(seq):
            raise BundleInvalid(f"{where}: recordHash is not the hash of the record at seq {seq}")
    into: dict[tuple[str, int], int] = {}
    for (parent, child, seq), edge in edges.items():
        into[child, seq] = into.get((child, seq), 0) + edge.mass_g
        shown = parent in listed and child in listed and child not in tainted
        if shown and (parent, child, seq) not in claimed:
            raise BundleInvalid(
                f"the bundle leaves out the flow of {edge.mass_g} g from {parent} into "
                f"{child} at seq {seq} that its records make"
            )
    for name in sorted(listed - tainted):
        lot = state.lots[name]
        maker = state.record(hashes[lot.created_seq])
        if maker is not None and maker.type in MADE_BY_FLOWS:
            got = into.get((name, lot.created_seq), 0)
            if got != lot.mass_g:
                raise BundleInvalid(
                    f"mass balance: lot {name} weighs {lot.mass_g} g but {got} g flowed into it "
                    f"at seq {lot.created_seq}"
                )
    return listed


def _check_claim(claim: Any, root: str, state: MemoryState) -> dict[str, int]:
    """Step 6: the recovered content the server claims is the content the replay computes."""
    where = "the bundle's claim"
    claim = _members(claim, where, where)
    if _get(claim, "lot", str, where) != root:
        raise BundleInvalid(f"the bundle's claim is about another lot than {root}")
    lot = state.lot(root)
    if lot is None:
        raise BundleInvalid(f"none of the bundle's records makes {root}")
    content = _grams(_get(claim, "content", dict, where), f"{where}.content")
    said = {
        "material": _get(claim, "material", str, where),
        "massG": _int(claim, "massG", where),
        "head": _get(claim, "head", str, where),
        "updatedSeq": _int(claim, "updatedSeq", where),
    }
    made = {
        "material": lot.material,
        "massG": lot.mass_g,
        "head": lot.head,
        "updatedSeq": lot.updated_seq,
    }
    for name in said:
        if said[name] != made[name]:
            raise BundleInvalid(
                f"the server claims {root}'s {name} is {said[name]}, but its records give "
                f"{made[name]}"
            )
    if content != lot.content:
        diffs = [
            f"{k}: claimed {content.get(k, 0)} g, the records give {lot.content.get(k, 0)} g"
            for k in sorted(set(content) | set(lot.content))
            if content.get(k, 0) != lot.content.get(k, 0)
        ]
        raise BundleInvalid(
            f"the server's claimed recovered content of {root} is not what its records give "
            f"({'; '.join(diffs) or 'the same grams, listed differently'})"
        )
    pre, post = lot.content.get("pre", 0), lot.content.get("post", 0)
    figures = {"recoveredG": pre + post, "preConsumerG": pre, "postConsumerG": post}
    for name, value in figures.items():
        if _int(claim, name, where) != value:
            raise BundleInvalid(
                f"the server claims {root}'s {name} is {claim[name]} g, but its records give "
                f"{value} g"
            )
    return dict(lot.content)


# --- the whole check ------------------------------------------------------------------------------


def verify_bundle(
    data: bytes | str | Mapping[str, Any], verifier_key: str, *, allow_incomplete: bool = False
) -> Verified:
    """Check a bundle (its JSON text, or the parsed object) against the ledger's verifier key
    (``<origin>+<key ID>+<base64 key>``: ``rledger checkpoint --verifier-key``). Returns what
    it proved; :class:`BundleInvalid` with the reason on the first failure, and for an
    incomplete bundle unless ``allow_incomplete``."""
    doc = load_bundle(data) if isinstance(data, bytes | str) else dict(data)
    if doc.get("format") != FORMAT:
        raise BundleInvalid(f"not a provenance bundle: its format is not {FORMAT!r}")
    doc = _members(doc, "the bundle", "the bundle")
    root_lot = _get(doc, "lot", str, "the bundle")
    says_complete = _get(doc, "complete", bool, "the bundle")
    gaps = (
        _get(doc, "truncated", bool, "the bundle"),
        _get(doc, "hiddenByAccess", bool, "the bundle"),
    )
    if says_complete == any(gaps):
        raise BundleInvalid("the bundle's complete flag contradicts truncated/hiddenByAccess")
    # 1. the checkpoint
    try:
        name, public = parse_verifier_key(verifier_key)
    except CheckpointError as exc:
        raise BundleInvalid(f"the verifier key is not usable: {exc}") from None
    where = "the bundle's checkpoint"
    cp = _members(doc["checkpoint"], where, where)
    note = _get(cp, "note", str, where)
    said_key = _get(cp, "verifierKey", str, where)
    try:
        checked = verify_checkpoint(note, public, name=name, origin=name)
    except CheckpointError as exc:
        hint = (
            f" (the bundle says it was signed by {said_key[:60]}…)"
            if said_key != verifier_key
            else ""
        )
        raise BundleInvalid(
            f"the bundle's checkpoint is not signed by the ledger key {verifier_key[:60]}…: "
            f"{exc}{hint}"
        ) from None
    size, root = checked.checkpoint.size, checked.checkpoint.root
    copies = (cp["origin"], cp["size"], cp["root"], cp["time"], said_key)
    if copies != (checked.checkpoint.origin, size, root.hex(), checked.time, verifier_key):
        raise BundleInvalid(
            "the bundle's copies of its checkpoint's origin, size, root, time or verifier key "
            "disagree with its signed note and the pinned key"
        )
    # 2. every record, in the signed tree
    recs = _records(doc, size, root)
    by_hash = {r.env.hash: r for r in recs}
    hashes = {r.seq: r.env.hash for r in recs}
    # 3. chains
    derived = _chains(recs, by_hash, says_complete)
    _check_chains(doc.get("chains"), derived)
    # 4, 5. signatures, keys, rules
    state, tainted, skipped = _replay(recs, by_hash, says_complete)
    _check_keys(doc.get("keys"), state)
    # 6. claims
    listed = _check_flows(doc, state, tainted, hashes)
    notes: list[str] = []
    content: dict[str, int] | None = None
    mass: int | None = None
    if root_lot in tainted:
        if not allow_incomplete:
            raise BundleInvalid(
                f"the bundle is incomplete: {len(skipped)} of its records draw on lots it "
                "leaves out (hidden from the token that fetched it, or beyond the walk's "
                f"bounds), so the recovered content of {root_lot} can't be recomputed; every "
                "record it holds checked out. Ask for a complete bundle (a regulator's token "
                "reads everything), or accept a partial check with --allow-incomplete"
            )
    else:
        content = _check_claim(doc.get("claim"), root_lot, state)
        mass = state.lots[root_lot].mass_g
        if not says_complete:
            notes.append(
                "the bundle says it is incomplete, yet holds every record the lot's content "
                "rests on"
            )
    return Verified(
        lot=root_lot,
        records=len(recs),
        lots=len(listed),
        origin=checked.checkpoint.origin,
        tree_size=size,
        root=root.hex(),
        signed_at=checked.time,
        complete=content is not None,
        content=content,
        mass_g=mass,
        unreplayed=tuple(skipped),
        notes=tuple(notes),
    )
