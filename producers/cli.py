"""``rledger``: the command line (DESIGN.md "The CLI").

Every database command takes ``--db`` (a SQLite path or a PostgreSQL URL;
default ``$RLEDGER_DB`` or ./rledger.db). Keys made by ``init`` live beside a
SQLite database in ``<name>.keys/`` (or ./rledger.keys for PostgreSQL)
unless ``--keys DIR`` says otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url
from tqdm import tqdm

from ledger.database import database_url, has_schema, migrate
from ledger.errors import LedgerError, RecordRefused
from ledger.store import Appended, Store
from ledger.tokens import issue_token, list_tokens, revoke_token
from ledger.verify import rebuild, verify_store
from producers.bootstrap import admit, genesis
from producers.demo import seed_demo
from producers.events import Signer
from producers.keyfiles import read_private_key, read_public_key, write_private_key
from producers.submit import parse_lines, submit_lines

DB_OPTION = click.option("--db", "db", default=None, help="SQLite path or PostgreSQL URL.")
KEYS_OPTION = click.option(
    "--keys", "keys_dir", default=None, type=click.Path(path_type=Path), help="Key directory."
)


def default_keys_dir(url: str) -> Path:
    if env := os.environ.get("RLEDGER_KEYS"):
        return Path(env)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database:
        db = Path(parsed.database)
        return db.with_name(db.stem + ".keys")
    return Path("rledger.keys")


def open_store(db: str | None) -> tuple[Store, str]:
    url = database_url(db)
    store = Store.open(url)
    if not has_schema(store.engine):
        raise click.ClickException(f"no ledger at {_safe(url)}; run `rledger init --db ...` first")
    return store, url


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@click.group()
@click.version_option(package_name="recovery-ledger")
def main() -> None:
    """Recovery Ledger: a signed, hash-chained ledger of recovered material."""


@main.command()
@DB_OPTION
@KEYS_OPTION
@click.option(
    "--operator", default="org:operator", show_default=True, help="The operator's org id."
)
@click.option("--name", default="Ledger operator", show_default=True)
@click.option("--region", default="CN", show_default=True, help="ISO 3166-2 code.")
def init(db: str | None, keys_dir: Path | None, operator: str, name: str, region: str) -> None:
    """Create a new ledger: its database, the ledger's key and the operator's key."""
    url = database_url(db)
    keys_dir = keys_dir or default_keys_dir(url)
    _init_ledger(url, keys_dir, operator, name, region)
    click.echo(f"ledger initialised at {_safe(url)}; keys in {keys_dir}")


def _init_ledger(url: str, keys_dir: Path, operator: str, name: str, region: str) -> None:
    migrate(url)
    store = Store.open(url)
    try:
        if store.last_seq() > 0:
            raise click.ClickException(f"{_safe(url)} already holds a ledger; nothing changed")
        ledger_key, operator_key = keys_dir / "ledger.key", keys_dir / "operator.key"
        for path in (ledger_key, operator_key):
            if path.exists():
                raise click.ClickException(f"{path} exists; choose another --keys directory")
        write_private_key(ledger_key)
        signer = Signer(operator, write_private_key(operator_key))
        _report(store.append([genesis(signer, name, region)]), ["genesis"])
    finally:
        store.close()


@main.command()
@DB_OPTION
@KEYS_OPTION
@click.option("--months", default=6, show_default=True, help="Months of simulated flows.")
@click.option("--seed", default=2026, show_default=True)
def demo(db: str | None, keys_dir: Path | None, months: int, seed: int) -> None:
    """Seed a synthetic regional network (all six families) through the signed path, then verify.

    Creates the ledger first if there is none. Seeding again with the same
    seed changes nothing: every record is already stored with the same bytes.
    """
    url = database_url(db)
    keys_dir = keys_dir or default_keys_dir(url)
    store = Store.open(url)
    fresh = not has_schema(store.engine) or store.last_seq() == 0
    store.close()
    if fresh:
        _init_ledger(url, keys_dir, "org:operator", "Demo ledger operator", "CN")
    store, _ = open_store(db)
    try:
        operator_id = store.operator()
        assert operator_id is not None
        operator = Signer(operator_id, read_private_key(keys_dir / "operator.key"))
        click.echo(f"seeding {months} months of flows into {_safe(url)} …", err=True)
        summary = seed_demo(store, operator, months=months, seed=seed)
        report = verify_store(store)
    except (RuntimeError, ValueError, LedgerError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"{summary.records} records from {len(summary.orgs)} organisations, {summary.lots} lots"
    )
    for family, grams in sorted(summary.by_family.items()):
        click.echo(f"  collected {family:<11} {grams // 1000:>14,} kg")
    click.echo(f"verify: {report}")
    if not report.ok:
        sys.exit(1)
    _print_demo_access(url, db)


# Who gets a demo token, and why a visitor would want to be them.
DEMO_VIEWERS = (
    ("org:gd-eco-regulator", "regulator: reads everything"),
    ("org:gz-automaker-demo", "automaker: its battery packs and their lineage"),
    ("org:gd-collector-1", "collector: its own lots and those it handled"),
)
DEMO_QUERY = '{ lots(first: 3, filter: {material: "batteries"}) { edges { node { id material massG status custodian { name } } } } }'


def _print_demo_access(url: str, db: str | None) -> None:
    """Fresh demo tokens (only their hashes are stored) and a query to try."""
    store = Store.open(url)
    try:
        tokens = [
            (org, why, issue_token(store.engine, org, label="demo")) for org, why in DEMO_VIEWERS
        ]
    finally:
        store.close()
    click.echo("\ndemo tokens (shown once; `rledger token list` / `token revoke ID`):")
    for org, why, text in tokens:
        click.echo(f"  {org:<24} {why}\n    {text}")
    db_arg = f" --db {db}" if db else ""
    click.echo(
        f"\nserve it:  rledger serve{db_arg}   (GraphiQL: http://127.0.0.1:8000/graphql;"
        ' set the header {"Authorization": "Bearer <token>"})\n'
        "then, e.g.:\n"
        "  curl -s http://127.0.0.1:8000/graphql -H 'content-type: application/json' \\\n"
        f"    -H 'authorization: Bearer {tokens[0][2]}' \\\n"
        f"    -d '{json.dumps({'query': DEMO_QUERY})}'"
    )


@main.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Private key file.")
def keygen(out: Path) -> None:
    """Write a new Ed25519 private key (PEM, mode 0600) to OUT and its public key to OUT.pub."""
    if out.exists():
        raise click.ClickException(f"{out} exists; refusing to overwrite a key")
    write_private_key(out)
    click.echo(f"private key: {out} (0600)\npublic key:  {out}.pub")


@main.group()
def org() -> None:
    """Organisations."""


@org.command("add")
@click.argument("org_id")
@click.option("--role", "roles", multiple=True, required=True, help="Repeat for several roles.")
@click.option("--region", required=True, help="ISO 3166-2 code, e.g. CN-GD.")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Display name (default: the id).")
@click.option("--operator-key", type=click.Path(exists=True, path_type=Path), default=None)
@DB_OPTION
@KEYS_OPTION
def org_add(
    org_id: str,
    roles: tuple[str, ...],
    region: str,
    key_file: Path,
    name: str | None,
    operator_key: Path | None,
    db: str | None,
    keys_dir: Path | None,
) -> None:
    """Register ORG_ID and its key (an org.register and a key.add signed by the operator)."""
    store, url = open_store(db)
    try:
        operator = store.operator()
        if operator is None:
            raise click.ClickException("the ledger has no genesis record; run `rledger init`")
        path = operator_key or (keys_dir or default_keys_dir(url)) / "operator.key"
        signer = Signer(operator, read_private_key(path))
        records, kid = admit(
            signer, org_id, name or org_id, roles, region, read_public_key(key_file)
        )
        _report(store.append(records, atomic=True), ["org.register", "key.add"])
    finally:
        store.close()
    click.echo(f"{org_id} registered with key {kid}")


@main.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--actor", default=None, help="Org id (default: the org the key is registered to).")
@click.option("--batch", "batch_size", default=500, show_default=True)
@click.option("--atomic", is_flag=True, help="All-or-nothing per batch.")
@DB_OPTION
def submit(
    file: Path, key_file: Path, actor: str | None, batch_size: int, atomic: bool, db: str | None
) -> None:
    """Sign the drafts in FILE.jsonl and append them.

    Each line is a draft {"type", "body", "id"?, "at"?, "parents"?} (signed
    here; parents default to the lots' current heads) or an already signed
    {"envelope", "signature"} (appended as it is).
    """
    store, _ = open_store(db)
    refused = 0
    try:
        private = read_private_key(key_file)
        signer = Signer(actor or "", private)
        if not actor:
            owner = store.key_owner(signer.key_id)
            if owner is None:
                raise click.ClickException(
                    "this key is not registered; pass --actor or add the key"
                )
            signer.actor = owner
        texts = file.read_text(encoding="utf-8").splitlines()
        total = 0
        with tqdm(total=len(texts), unit="rec", disable=None, file=sys.stderr) as bar:
            for start in range(0, len(texts), batch_size):
                chunk = list(enumerate(texts[start : start + batch_size], start + 1))
                try:
                    lines = parse_lines(chunk)
                except ValueError as exc:
                    raise click.ClickException(str(exc)) from None
                submit_lines(
                    lines,
                    signer,
                    lambda b: store.append(b, atomic=atomic),
                    store.heads,
                    atomic=atomic,
                )
                for line in lines:
                    total += 1
                    if isinstance(line.result, RecordRefused):
                        refused += 1
                        click.echo(f"line {line.number}: refused {line.result}", err=True)
                bar.update(len(chunk))
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{total - refused} appended, {refused} refused")
    if refused:
        sys.exit(1)


def _report(results: list[Any], labels: list[str]) -> None:
    for label, result in zip(labels, results, strict=True):
        if not isinstance(result, Appended):
            raise click.ClickException(f"{label} refused: {result}")


@main.command()
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, envvar="RLEDGER_PORT")
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes.")
def serve(db: str | None, host: str, port: int, workers: int) -> None:
    """Serve the GraphQL API (GraphiQL at /graphql, health at /health)."""
    import uvicorn

    store, url = open_store(db)
    try:
        empty = store.last_seq() == 0
    finally:
        store.close()
    if empty:
        raise click.ClickException(
            "the ledger is empty; run `rledger init` or `rledger demo` first"
        )
    # The workers open the store themselves from the environment (uvicorn's factory).
    os.environ["RLEDGER_DB"] = url
    click.echo(f"serving {_safe(url)} on http://{host}:{port}/graphql", err=True)
    uvicorn.run(
        "schema.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@main.group()
def token() -> None:
    """API bearer tokens (only their hash is stored)."""


@token.command("create")
@click.option("--org", "org_id", required=True, help="The organisation the token acts for.")
@click.option("--label", default="", help="A note for `token list`, e.g. who holds it.")
@DB_OPTION
def token_create(org_id: str, label: str, db: str | None) -> None:
    """Issue a token for ORG and print it alone on stdout (it is shown only once)."""
    store, _ = open_store(db)
    try:
        text = issue_token(store.engine, org_id, label=label)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(text)


@token.command("revoke")
@click.argument("token_id")
@DB_OPTION
def token_revoke(token_id: str, db: str | None) -> None:
    """Revoke the token whose id is TOKEN_ID (see `token list`); it stops working at once."""
    store, _ = open_store(db)
    try:
        done = revoke_token(store.engine, token_id)
    finally:
        store.close()
    if not done:
        raise click.ClickException(f"no active token with id {token_id}; see `rledger token list`")
    click.echo(f"revoked {token_id}")


@token.command("list")
@click.option("--org", "org_id", default=None)
@DB_OPTION
def token_list(org_id: str | None, db: str | None) -> None:
    """List tokens (ids, organisations, labels; never the secrets)."""
    store, _ = open_store(db)
    try:
        infos = list_tokens(store.engine, org_id)
    finally:
        store.close()
    for info in infos:
        state = f"revoked {info.revoked_at}" if info.revoked_at else "active"
        click.echo(f"{info.id}  {info.org:<32} {info.created_at}  {state}  {info.label}")


@main.command()
@DB_OPTION
def verify(db: str | None) -> None:
    """Re-check every record: bytes, hash, signature, key validity, parents, mass balance."""
    store, _ = open_store(db)
    try:
        report = verify_store(store)
    finally:
        store.close()
    click.echo(str(report))
    if not report.ok:
        sys.exit(1)


@main.command("rebuild")
@DB_OPTION
def rebuild_cmd(db: str | None) -> None:
    """Regenerate every projection by replaying the log."""
    store, _ = open_store(db)
    try:
        state = rebuild(store)
    finally:
        store.close()
    click.echo(f"rebuilt from {state.seq} records: {len(state.lots)} lots, {len(state.orgs)} orgs")


if __name__ == "__main__":
    main()
