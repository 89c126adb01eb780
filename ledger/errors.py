"""Errors the ledger raises.

Every refusal of a record is a :class:`RecordRefused` carrying a stable
``code`` (clients switch on it), the record ``id`` when it could be read, the
``path`` of the offending field inside the envelope (``body.inputs[1].mass_g``)
and a message that says what to do next.

The tree::

    LedgerError                  anything this package raises on purpose
    ├── RecordRefused            one record broke a rule; nothing was written
    │   └── Conflict             stale ``parents``: re-read the lot heads, retry
    ├── Overloaded               the ledger is busy; retry the same batch later
    └── StoreUnavailable         the database failed mid-write; nothing
                                 unacknowledged was kept; retry the same batch

Codes are listed in :data:`CODES` so the API and the docs name the same set.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    "json.malformed": "the envelope is not valid UTF-8 JSON text",
    "json.duplicate_key": "an object repeats a member name",
    "json.float": "a number is not an integer; masses are integer grams",
    "json.integer_range": "an integer lies outside -(2^53-1)..2^53-1 (RFC 8785 / I-JSON)",
    "json.not_canonical": "the text is not its own RFC 8785 canonical form",
    "envelope.field": "a field is missing, of the wrong type, or not allowed",
    "envelope.version": "unsupported envelope version",
    "type.unknown": "the record type is not in the event vocabulary",
    "signature.malformed": "the signature is not base64url Ed25519 (64 bytes)",
    "signature.invalid": "the signature does not verify over the canonical bytes",
    "key.unknown": "no key with this id is registered",
    "key.wrong_actor": "the key belongs to another organisation",
    "key.revoked": "the key was revoked before this record",
    "key.not_yet_valid": "the record's time is before the key's validity",
    "key.expired": "the record's time is after the key's validity",
    "key.exists": "the key is already registered",
    "at.future": "the record's time lies in the future",
    "org.unknown": "no such organisation is registered",
    "org.exists": "the organisation is already registered",
    "org.not_permitted": "the organisation may not sign this kind of record",
    "genesis.required": "an empty ledger accepts only the operator's org.register",
    "lot.unknown": "no such lot",
    "lot.exists": "a lot with this id already exists",
    "lot.duplicate": "the same lot appears twice in one record",
    "lot.state": "the lot's status does not allow this operation",
    "actor.not_custodian": "the actor does not hold the lot",
    "material.unknown": "the material code is not in the taxonomy",
    "material.mismatch": "merged lots must share one material",
    "element.unknown": "the element symbol is not tracked",
    "element.exceeds_mass": "element masses add up to more than the lot's mass",
    "element.exceeds_inputs": "an output declares more of an element than the inputs gave",
    "recovered.declared": "recovered content is computed by the ledger, never submitted",
    "battery_code.malformed": "a unit code is not a valid GB/T 34014-2017 code or GS1 battery id",
    "battery_code.duplicate": "the battery code is already registered on another lot",
    "battery_code.not_battery": "unit codes are for lots of the batteries family",
    "battery_code.second_life": "a second-life recode names no unit of the lot or breaks §4.2",
    "void.certified": "the record's outputs back a certificate",
    "epr.scheme_unknown": "no such EPR scheme",
    "epr.category_unknown": "the scheme has no such category",
    "epr.period": "the period is not of the scheme's kind, or does not match",
    "certificate.exists": "a certificate with this id already exists",
    "certificate.unknown": "no such certificate",
    "certificate.not_output": "a backing lot is not the output of a transform",
    "certificate.not_producer": "only the recycler that produced an output certifies it",
    "certificate.ineligible": "the output's process or material is not eligible in the category",
    "certificate.disposed": "a disposed or voided lot backs no certificate",
    "certificate.exceeds_output": "the lot's certified mass would exceed its recovered output",
    "certificate.not_holder": "only the certificate's holder may move or retire it",
    "certificate.retired": "the certificate is retired: once, and it never moves afterwards",
    "units.unknown": "a part lists a unit the lot does not hold",
    "units.unassigned": "a split of a lot with units must give every unit to exactly one part",
    "process.unknown": "the process code is not in the taxonomy",
    "mass.not_positive": "a mass must be a positive integer number of grams",
    "mass.negative": "a mass may not be negative",
    "mass.insufficient": "the lot holds less than the record spends",
    "mass.unbalanced": "the masses out do not equal the masses in",
    "mass.mismatch": "the declared mass differs from the lot's remaining mass",
    "mass.gain": "a weighed mass exceeds the declared mass",
    "parents.missing": "parents lacks the head of a lot the record touches",
    "parents.unexpected": "parents names a lot the record does not touch",
    "conflict": "a lot has moved on since the client read it: re-read its head and retry",
    "id.reused": "this id was already used for a record with other bytes",
    "record.unknown": "no record with this hash",
    "void.not_permitted": "only the record's actor or a regulator may void it",
    "void.not_head": "the record is no longer the latest on every lot it touched",
    "void.unsupported": "this kind of record cannot be voided",
    "void.already": "the record is already voided",
    "batch.too_large": "the batch holds more records than allowed",
    "actor.not_authorised": "the record's actor is not the organisation of the API token",
    "batch.aborted": "not written: another record of this atomic batch was refused",
}


class LedgerError(Exception):
    """Base of every error this package raises on purpose."""


class RecordRefused(LedgerError):
    """A record broke a rule. Nothing of it was written."""

    def __init__(
        self, code: str, message: str, *, path: str | None = None, record_id: str | None = None
    ) -> None:
        if code not in CODES:  # a typo in a code is a bug, not a refusal
            raise ValueError(f"unregistered error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
        self.record_id = record_id

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        rec = f"record {self.record_id}: " if self.record_id else ""
        return f"{rec}{self.code}{where}: {self.message}"

    def for_record(self, record_id: str | None) -> RecordRefused:
        """Attach the record id if it was not known where the rule fired."""
        if self.record_id is None:
            self.record_id = record_id
        return self


class Conflict(RecordRefused):
    """The record's ``parents`` no longer match the lots' heads."""

    def __init__(self, message: str, *, path: str | None = None, record_id: str | None = None):
        super().__init__("conflict", message, path=path, record_id=record_id)


class Overloaded(LedgerError):
    """The ledger could not take the batch now (lock timeout). Retry it unchanged."""


class StoreUnavailable(LedgerError):
    """The database failed during a write; the batch was rolled back. Retry it unchanged."""
