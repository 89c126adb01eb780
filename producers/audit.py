"""The auditor: catches a ledger that rewrites its history, from its public API alone.

Certificate Transparency's monitors do this for certificate logs: keep the last signed tree
head seen; for each new one, check the log's signature and a consistency proof (RFC 9162
§2.1.4) showing that the old tree is a prefix of the new. An operator who changes one old
record — even re-signing it and rebuilding the whole Merkle tree in the database — gets a new
root for every size from that record on, and no consistency proof leads from the root this
auditor holds to it.

:func:`audit` asks the ledger (``producers/client.py``) for its latest ``checkpoint`` and,
when this auditor saw one before, for ``consistencyProof(from, to)``; it checks the note's
signatures with the pinned verifier key (ledger/checkpoints.py) and the proof with
ledger/merkle.py, then keeps the new checkpoint in a local state file. It fails closed, and
keeps the old checkpoint, on: a bad signature, a smaller tree (a log never shrinks), the same
size with another root, a consistency proof that does not verify, a signed time that goes
backwards. The two signed notes are the evidence: both are signed by the ledger's key.

The state file (default ``~/.rledger-audit.json``; JSON)::

    {"format": "rledger-audit@v1",
     "ledgers": [{"url", "verifierKey", "size", "root", "time", "note", "checkedAt"}]}

one entry per ledger URL. The verifier key is pinned the first time (given out of band:
``rledger checkpoint --verifier-key`` on the ledger's host) and used from then on, also by
``rledger verify-bundle`` for bundles of that log.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger import merkle
from ledger.checkpoints import (
    CheckpointError,
    VerifiedCheckpoint,
    parse_verifier_key,
    verify_checkpoint,
)
from producers.client import LedgerClient, graphql_url

STATE_FORMAT = "rledger-audit@v1"
DEFAULT_STATE = Path("~/.rledger-audit.json")

CHECKPOINT_QUERY = "query Checkpoint { checkpoint { note } }"
CONSISTENCY_QUERY = """query Consistency($from: Long!, $to: Long!) {
  consistencyProof(from: $from, to: $to) { fromSize toSize hashes }
}"""


class AuditFailure(Exception):
    """The ledger failed the audit (or can't be audited); ``reason`` says why, ``evidence``
    holds the signed notes that show it (the held one first), if any."""

    def __init__(self, reason: str, evidence: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class Seen:
    """A checkpoint this auditor verified and kept."""

    url: str
    verifier_key: str
    size: int
    root: str
    time: int
    note: str
    checked_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "verifierKey": self.verifier_key,
            "size": self.size,
            "root": self.root,
            "time": self.time,
            "note": self.note,
            "checkedAt": self.checked_at,
        }


@dataclass(frozen=True, slots=True)
class Audited:
    """A passed audit: the checkpoint now held, and the one held before (None: first)."""

    now: Seen
    before: Seen | None

    def summary(self) -> str:
        at = datetime.fromtimestamp(self.now.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        head = f"checkpoint of {self.now.size} records signed {at}, root {self.now.root}"
        if self.before is None:
            return f"ok: {head}; the first this auditor holds (verifier key pinned)"
        if self.before.size == self.now.size:
            return f"ok: {head}; unchanged since {self.before.checked_at}"
        return (
            f"ok: {head}; consistent with the {self.before.size} records held since "
            f"{self.before.checked_at} (RFC 9162 consistency proof verified)"
        )


# --- the state file -------------------------------------------------------------------------


def state_path(path: Path | None) -> Path:
    return (path or DEFAULT_STATE).expanduser()


def load_state(path: Path) -> list[Seen]:
    """The checkpoints held; none when the file does not exist. A file that is not this
    auditor's state is an error, never overwritten."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditFailure(f"cannot read the audit state {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
        if doc.get("format") != STATE_FORMAT:
            raise ValueError(f"its format is not {STATE_FORMAT!r}")
        return [
            Seen(
                str(e["url"]),
                str(e["verifierKey"]),
                _nat(e["size"]),
                str(e["root"]),
                _nat(e["time"]),
                str(e["note"]),
                str(e["checkedAt"]),
            )
            for e in doc["ledgers"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuditFailure(
            f"the audit state {path} is not an rledger audit file ({exc}); move it aside or "
            "pass another --state"
        ) from None


def _nat(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("a size or time is a non-negative integer")
    return value


def save_state(path: Path, entries: list[Seen]) -> None:
    """Write the state atomically (a temporary file renamed over the old one)."""
    doc = {"format": STATE_FORMAT, "ledgers": [e.as_json() for e in entries]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=2)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pinned_key(path: Path, origin: str) -> str | None:
    """The verifier key pinned for the log named ``origin`` (for ``verify-bundle``)."""
    found = {e.verifier_key for e in load_state(path) if e.verifier_key.split("+", 1)[0] == origin}
    if len(found) > 1:
        raise AuditFailure(
            f"the audit state {path} pins {len(found)} different keys for the log {origin}: "
            "pass --verifier-key"
        )
    return found.pop() if found else None


def read_verifier_key(value: str) -> str:
    """A verifier key given on the command line: the key itself, or a file holding it."""
    candidate = Path(value).expanduser()
    text = value
    if "+" not in value and candidate.is_file():
        text = candidate.read_text(encoding="utf-8").strip()
    try:
        parse_verifier_key(text)
    except CheckpointError as exc:
        raise AuditFailure(f"--verifier-key: {exc}") from None
    return text


# --- the audit ------------------------------------------------------------------------------


def audit(
    client: LedgerClient,
    url: str,
    path: Path,
    verifier_key: str | None = None,
    *,
    now: datetime | None = None,
) -> Audited:
    """Audit the ledger at ``url`` (through ``client``) against the checkpoint held in the
    state file ``path``; keep the new checkpoint when it passes. :class:`AuditFailure`
    otherwise (the state is then left as it was)."""
    key = graphql_url(url)
    entries = load_state(path)
    held = next((e for e in entries if e.url == key), None)
    vkey = verifier_key or (held.verifier_key if held is not None else None)
    if vkey is None:
        raise AuditFailure(
            "no verifier key pinned for this ledger yet: pass --verifier-key (get it out of "
            "band: `rledger checkpoint --verifier-key` on the ledger's host); it is kept for "
            "the next audits"
        )
    if held is not None and vkey != held.verifier_key:
        raise AuditFailure(
            f"the audit state pins another verifier key for {key} ({held.verifier_key}); a "
            "ledger key is not swapped silently: remove that entry from the state file by hand "
            "if the ledger's key really changed"
        )
    name, public = parse_verifier_key(vkey)
    data = client.query(CHECKPOINT_QUERY, retry=True)
    cp = data.get("checkpoint")
    if not isinstance(cp, dict) or not isinstance(cp.get("note"), str):
        raise AuditFailure("the ledger has no signed checkpoint yet: nothing to audit")
    note: str = cp["note"]
    try:
        checked = verify_checkpoint(note, public, name=name, origin=name)
    except CheckpointError as exc:
        raise AuditFailure(
            f"the ledger's checkpoint does not verify with the pinned key: {exc}", (note,)
        ) from None
    if held is not None:
        _consistent(client, held, checked)
    seen = Seen(
        key,
        vkey,
        checked.checkpoint.size,
        checked.checkpoint.root.hex(),
        checked.time or 0,
        note,
        (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    save_state(path, [e for e in entries if e.url != key] + [seen])
    return Audited(seen, held)


def _consistent(client: LedgerClient, held: Seen, new: VerifiedCheckpoint) -> None:
    """The held checkpoint's tree is a prefix of the new one's (RFC 9162 §2.1.4)."""
    size, root = new.checkpoint.size, new.checkpoint.root
    old_root = bytes.fromhex(held.root)
    evidence = (held.note, new.note)
    rewritten = "HISTORY REWRITTEN: "
    if size < held.size:
        raise AuditFailure(
            f"{rewritten}the ledger now signs a tree of {size} records, but signed one of "
            f"{held.size} before (held since {held.checked_at}): a log never shrinks",
            evidence,
        )
    if new.time is not None and new.time < held.time:
        raise AuditFailure(
            f"the ledger's signed time went backwards: {new.time} after {held.time}", evidence
        )
    if size == held.size:
        if root != old_root:
            raise AuditFailure(
                f"{rewritten}two different roots signed for the same {size} records: "
                f"{held.root} (held since {held.checked_at}) and now {root.hex()}",
                evidence,
            )
        return
    data = client.query(CONSISTENCY_QUERY, {"from": held.size, "to": size}, retry=True)
    proof = data.get("consistencyProof")
    if not isinstance(proof, dict) or (proof.get("fromSize"), proof.get("toSize")) != (
        held.size,
        size,
    ):
        raise AuditFailure(
            f"the ledger did not answer a consistency proof from {held.size} to {size} records",
            evidence,
        )
    try:
        hashes = merkle.hashes_from_hex(proof.get("hashes"))
        merkle.check_consistency(held.size, size, old_root, root, hashes)
    except merkle.ProofError as exc:
        raise AuditFailure(
            f"{rewritten}the ledger's tree of {size} records does not extend the tree of "
            f"{held.size} records it signed before (root {held.root}, held since "
            f"{held.checked_at}): {exc}. Records among the first {held.size} were changed.",
            evidence,
        ) from None
