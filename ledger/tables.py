"""SQL tables (SQLModel). Alembic's migrations are the schema of record;
tests/test_migrations.py checks that these models and the migrations agree.

``records`` is the log: append-only, guarded by triggers on both engines.
Everything else is a projection that ``rebuild`` regenerates from the log.
The append path writes through SQLAlchemy Core (``Model.__table__``), not
the ORM: ORM unit-of-work inserts are several times slower.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    literal_column,
    text,
)
from sqlmodel import Field, SQLModel

SEQ = BigInteger().with_variant(Integer(), "sqlite")


class RecordRow(SQLModel, table=True):
    __tablename__ = "records"
    __table_args__ = (
        Index("ix_records_hash16", func.substr(text("hash"), 1, 16)),
        Index("ix_records_actor", "actor", "seq"),
    )
    # On SQLite an INTEGER PRIMARY KEY is the rowid itself: no separate index to write.
    seq: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    # Not UNIQUE: the id is, and the hash covers the id. Looked up through
    # ix_records_hash16, a compact index on the first 16 hex digits (a unique
    # index on 64 random hex digits dirtied a page per insert).
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    type: str = Field(sa_column=Column(String(32), nullable=False))
    actor: str = Field(sa_column=Column(String(64), nullable=False))
    key: str = Field(sa_column=Column(String(64), nullable=False))
    at: str = Field(sa_column=Column(String(32), nullable=False))
    recorded_at: str = Field(sa_column=Column(String(32), nullable=False))
    canonical: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sig: str = Field(sa_column=Column(String(128), nullable=False))


class LotRow(SQLModel, table=True):
    __tablename__ = "lots"
    id: str = Field(sa_column=Column(String(64), primary_key=True))
    material: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    origin: str = Field(sa_column=Column(String(16), nullable=False))
    mass_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    remaining_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False, index=True))
    custodian: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    head: str = Field(sa_column=Column(String(64), nullable=False))
    created_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    elements: str = Field(sa_column=Column(Text, nullable=False))
    units: str = Field(sa_column=Column(Text, nullable=False))
    held_status: str | None = Field(default=None, sa_column=Column(String(32)))
    transit_from: str | None = Field(default=None, sa_column=Column(String(64)))
    transit_to: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    transit_g: int | None = Field(default=None, sa_column=Column(BigInteger))
    transit_loss_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    disposed_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Recovered content (ledger/content.py), JSON objects of integer grams.
    content: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    recovered: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    recoded: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    prev: str | None = Field(default=None, sa_column=Column(Text))


class OrgRow(SQLModel, table=True):
    __tablename__ = "orgs"
    id: str = Field(sa_column=Column(String(64), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    roles: str = Field(sa_column=Column(Text, nullable=False))
    region: str = Field(sa_column=Column(String(8), nullable=False))
    registered_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    # JSON {"<material>": grams per year}: permitted annual capacity (EPR flags).
    capacity: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))


class KeyRow(SQLModel, table=True):
    __tablename__ = "keys"
    id: str = Field(sa_column=Column(String(64), primary_key=True))
    org: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    added_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    valid_from: str | None = Field(default=None, sa_column=Column(String(32)))
    valid_until: str | None = Field(default=None, sa_column=Column(String(32)))
    revoked_seq: int | None = Field(default=None, sa_column=Column(BigInteger))


class EdgeRow(SQLModel, table=True):
    """Mass that flowed from lot ``parent`` into lot ``child`` by the record at ``seq``."""

    __tablename__ = "lot_edges"
    __table_args__ = (Index("ix_lot_edges_child", "child"),)
    parent: str = Field(sa_column=Column(String(64), primary_key=True))
    child: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    mass_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    elements: str = Field(  # JSON: element grams
        sa_column=Column(Text, nullable=False, server_default="{}")
    )


class LotUnitRow(SQLModel, table=True):
    """Lot ``lot`` holds unit ``unit`` (a battery code's canonical key) from the record at
    ``seq``; ``original``: for a second-life code, the key of the code it keeps."""

    __tablename__ = "lot_units"
    __table_args__ = (Index("ix_lot_units_lot", "lot"),)
    unit: str = Field(sa_column=Column(String(160), primary_key=True))
    lot: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    original: str | None = Field(default=None, sa_column=Column(String(160)))


class OutputRow(SQLModel, table=True):
    """A lot made by a transform, and how much of its recovered output certificates use."""

    __tablename__ = "epr_outputs"
    __table_args__ = (Index("ix_epr_outputs_actor", "actor", "at"),)
    lot: str = Field(sa_column=Column(String(64), primary_key=True))
    actor: str = Field(sa_column=Column(String(64), nullable=False))
    process: str = Field(sa_column=Column(String(64), nullable=False))
    material: str = Field(sa_column=Column(String(64), nullable=False))
    at: str = Field(sa_column=Column(String(32), nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    # JSON {"mass": g, "Co": g, ...}: recovered grams when made, and those certified.
    recovered: str = Field(sa_column=Column(Text, nullable=False))
    certified: str = Field(sa_column=Column(Text, nullable=False))


class CertificateRow(SQLModel, table=True):
    __tablename__ = "certificates"
    __table_args__ = (
        Index("ix_certificates_holder", "holder", "scheme", "period"),
        Index("ix_certificates_issuer", "issuer", "scheme", "period"),
    )
    id: str = Field(sa_column=Column(String(64), primary_key=True))
    scheme: str = Field(sa_column=Column(String(64), nullable=False))
    category: str = Field(sa_column=Column(String(64), nullable=False))
    period: str = Field(sa_column=Column(String(16), nullable=False))
    issuer: str = Field(sa_column=Column(String(64), nullable=False))
    holder: str = Field(sa_column=Column(String(64), nullable=False))
    mass_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    lots: str = Field(sa_column=Column(Text, nullable=False))  # JSON [[lot, grams], ...]
    issued_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    retired_period: str | None = Field(default=None, sa_column=Column(String(16)))


class DeclarationRow(SQLModel, table=True):
    __tablename__ = "declarations"
    __table_args__ = (Index("ix_declarations_producer", "producer", "scheme", "period"),)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    producer: str = Field(sa_column=Column(String(64), nullable=False))
    scheme: str = Field(sa_column=Column(String(64), nullable=False))
    category: str = Field(sa_column=Column(String(64), nullable=False))
    period: str = Field(sa_column=Column(String(16), nullable=False))
    mass_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    units: int | None = Field(default=None, sa_column=Column(BigInteger))


class FlowDayRow(SQLModel, table=True):
    """The materialFlows rollup (ledger/stages.py flow_rows): grams per UTC day, stage to stage,
    actor, material and disposal method, kept up to date at append time (a void subtracts)."""

    __tablename__ = "flow_days"
    day: str = Field(sa_column=Column(String(10), primary_key=True))
    source: str = Field(sa_column=Column(String(16), primary_key=True))
    target: str = Field(sa_column=Column(String(16), primary_key=True))
    actor: str = Field(sa_column=Column(String(64), primary_key=True))
    material: str = Field(sa_column=Column(String(64), primary_key=True))
    method: str = Field(sa_column=Column(String(32), primary_key=True))
    mass_g: int = Field(sa_column=Column(BigInteger, nullable=False))


class FlowTotalRow(SQLModel, table=True):
    """``flow_days`` without the actor: grams per UTC day, stage to stage, material and
    method, for every organisation together. Kept by the same increments at append time;
    ``materialFlows`` reads it for a question about everyone (a regulator's, by stage, with
    no region): a year of a national network is a few thousand rows here against hundreds
    of thousands in ``flow_days`` (docs/performance.md)."""

    __tablename__ = "flow_totals"
    day: str = Field(sa_column=Column(String(10), primary_key=True))
    source: str = Field(sa_column=Column(String(16), primary_key=True))
    target: str = Field(sa_column=Column(String(16), primary_key=True))
    material: str = Field(sa_column=Column(String(64), primary_key=True))
    method: str = Field(sa_column=Column(String(32), primary_key=True))
    mass_g: int = Field(sa_column=Column(BigInteger, nullable=False))


class LotRecordRow(SQLModel, table=True):
    """The record at ``seq`` changed lot ``lot``: a lot's history, and who ever acted on it
    (``lot_records JOIN records ON records.seq = lot_records.seq``)."""

    __tablename__ = "lot_records"
    __table_args__ = (Index("ix_lot_records_seq", "seq"),)
    lot: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


class TokenRow(SQLModel, table=True):
    """An API bearer token: only its SHA-256 is stored (see ledger/tokens.py).

    Not part of the ledger: tokens are operational secrets, issued and revoked
    by whoever runs the server, so this table is neither signed nor append-only.
    """

    __tablename__ = "api_tokens"
    id: str = Field(sa_column=Column(String(24), primary_key=True))
    org: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    label: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    revoked_at: str | None = Field(default=None, sa_column=Column(String(32)))


class RefusedRow(SQLModel, table=True):
    """The refusals log: signed records the rules refused (not ``conflict``s, which are
    routine), so attempts — a certificate past its output, a code registered twice — stay
    visible to regulators though nothing of them entered the ledger.

    Not part of the ledger (nothing refused is), not a projection (``rebuild`` can't
    regenerate it): an operational record like ``api_tokens``. Its rows are the signed
    bytes, so each attempt is attributable to the key that signed it.
    """

    __tablename__ = "refused_records"
    __table_args__ = (Index("ix_refused_records_actor", "actor", "id"),)
    id: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=True))
    record_id: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    type: str = Field(sa_column=Column(String(32), nullable=False))
    actor: str = Field(sa_column=Column(String(64), nullable=False))
    at: str = Field(sa_column=Column(String(32), nullable=False))
    received_at: str = Field(sa_column=Column(String(32), nullable=False))
    code: str = Field(sa_column=Column(String(64), nullable=False))
    path: str | None = Field(default=None, sa_column=Column(String(200)))
    message: str = Field(sa_column=Column(Text, nullable=False))
    canonical: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sig: str = Field(sa_column=Column(String(128), nullable=False))


class MetaRow(SQLModel, table=True):
    """One row: the last sequence number. Writers lock it (the sequencer)."""

    __tablename__ = "ledger_meta"
    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class MerkleHashRow(SQLModel, table=True):
    """The Merkle log's stored hashes (ledger/merkle.py): one per complete subtree, keyed by
    its stored-hash index (leaf i, then the subtrees it completes). Leaf i is the record at
    seq i + 1. Derived from the log (``rledger rebuild`` rewrites it), so not append-only
    guarded; ``verify`` checks it against the records. See docs/adr/0006-merkle-log.md."""

    __tablename__ = "merkle_hashes"
    id: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A signed checkpoint of the Merkle log (ledger/checkpoints.py): append-only, guarded
    by triggers on both engines like ``records``. ``root``: lowercase hex; ``time``: the
    POSIX seconds it signs; ``note``: the C2SP signed note; ``verifier_key``: the signed-note
    verifier key of the ledger key that signed it."""

    __tablename__ = "checkpoints"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: str = Field(sa_column=Column(String(64), nullable=False))
    time: int = Field(sa_column=Column(BigInteger, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    verifier_key: str = Field(sa_column=Column(String(256), nullable=False))


def table(model: type[SQLModel]) -> Table:
    t = model.__table__  # type: ignore[attr-defined]
    assert isinstance(t, Table)
    return t


records = table(RecordRow)
lots = table(LotRow)
orgs = table(OrgRow)
keys = table(KeyRow)
lot_edges = table(EdgeRow)
lot_records = table(LotRecordRow)
lot_units = table(LotUnitRow)
epr_outputs = table(OutputRow)
certificates = table(CertificateRow)
declarations = table(DeclarationRow)
flow_days = table(FlowDayRow)
flow_totals = table(FlowTotalRow)
api_tokens = table(TokenRow)
ledger_meta = table(MetaRow)
refused_records = table(RefusedRow)
merkle_hashes = table(MerkleHashRow)
checkpoints = table(CheckpointRow)
metadata = SQLModel.metadata


HASH16 = func.substr(records.c.hash, literal_column("1"), literal_column("16"))


def by_hash_prefix(hashes: Iterable[str]) -> Any:
    """WHERE clause for records whose hash starts like one of ``hashes`` (uses ix_records_hash16).

    Callers keep only exact matches themselves: adding ``hash = :h`` in SQL
    lets SQLite's constant propagation rewrite the indexed expression into a
    constant, and the query falls back to a full scan. The 1 and 16 are
    written into the SQL, not bound: the planner matches an expression index
    only to the very same expression, and ``substr(hash, ?, ?)`` is not
    ``substr(hash, 1, 16)`` (tests/test_bug_hash_prefix_bound_as_parameters.py).
    """
    return HASH16.in_(sorted({h[:16] for h in hashes}))


PROJECTIONS = (
    lots,
    orgs,
    keys,
    lot_edges,
    lot_records,
    lot_units,
    epr_outputs,
    certificates,
    declarations,
    flow_days,
    flow_totals,
)
