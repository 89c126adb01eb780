"""``rledger``: the command line (DESIGN.md "The CLI").

Every database command takes ``--db`` (a SQLite path or a PostgreSQL URL;
default ``$RLEDGER_DB`` or ./rledger.db). Keys made by ``init`` live beside a
SQLite database in ``<name>.keys/`` (or ./rledger.keys for PostgreSQL)
unless ``--keys DIR`` says otherwise.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url
from tqdm import tqdm

from ledger.database import database_url, has_schema, migrate
from ledger.errors import LedgerError
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


def parse_capacity(items: tuple[str, ...]) -> dict[str, int]:
    """``MATERIAL=GRAMS`` options as {material: grams per year}; a usage error says which is
    wrong. Whether the material exists is the ledger's to check (``material.unknown``)."""
    capacity: dict[str, int] = {}
    for item in items:
        material, sep, grams = item.partition("=")
        material, grams = material.strip(), grams.strip()
        if not sep or not material or not re.fullmatch(r"[0-9]{1,16}", grams) or int(grams) < 1:
            raise click.BadParameter(
                f"{item!r} is not MATERIAL=GRAMS with whole grams per year above 0, e.g. "
                "plastics.rpet_pellet=5000000000",
                param_hint="--capacity",
            )
        if material in capacity:
            raise click.BadParameter(
                f"{material} is given twice; give each material once", param_hint="--capacity"
            )
        capacity[material] = int(grams)
    return capacity


@org.command("add")
@click.argument("org_id")
@click.option("--role", "roles", multiple=True, required=True, help="Repeat for several roles.")
@click.option("--region", required=True, help="ISO 3166-2 code, e.g. CN-GD.")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Display name (default: the id).")
@click.option(
    "--capacity",
    "capacities",
    multiple=True,
    metavar="MATERIAL=GRAMS",
    help="Permitted annual capacity for a material, grams per year (e.g. "
    "plastics.rpet_pellet=5000000000); repeat for several. EPR flags compare certified "
    "output with it.",
)
@click.option("--operator-key", type=click.Path(exists=True, path_type=Path), default=None)
@DB_OPTION
@KEYS_OPTION
def org_add(
    org_id: str,
    roles: tuple[str, ...],
    region: str,
    key_file: Path,
    name: str | None,
    capacities: tuple[str, ...],
    operator_key: Path | None,
    db: str | None,
    keys_dir: Path | None,
) -> None:
    """Register ORG_ID and its key (an org.register and a key.add signed by the operator)."""
    capacity = parse_capacity(capacities)
    store, url = open_store(db)
    try:
        operator = store.operator()
        if operator is None:
            raise click.ClickException("the ledger has no genesis record; run `rledger init`")
        path = operator_key or (keys_dir or default_keys_dir(url)) / "operator.key"
        signer = Signer(operator, read_private_key(path))
        records, kid = admit(
            signer,
            org_id,
            name or org_id,
            roles,
            region,
            read_public_key(key_file),
            capacity=capacity,
        )
        _report(store.append(records, atomic=True), ["org.register", "key.add"])
    finally:
        store.close()
    click.echo(f"{org_id} registered with key {kid}")


@main.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--actor",
    default=None,
    help="Org id (default: the org the key is registered to; with --url, the token's org).",
)
@click.option("--batch", "batch_size", default=500, show_default=True, type=click.IntRange(1, 5000))
@click.option("--atomic", is_flag=True, help="All-or-nothing per batch.")
@click.option(
    "--url", default=None, help="Submit over the API at URL (e.g. http://127.0.0.1:8000)."
)
@click.option(
    "--token",
    default=None,
    envvar="RLEDGER_TOKEN",
    show_envvar=True,
    help="API token for --url (prefer the environment variable: it stays out of shell history).",
)
@DB_OPTION
def submit(
    file: Path,
    key_file: Path,
    actor: str | None,
    batch_size: int,
    atomic: bool,
    url: str | None,
    token: str | None,
    db: str | None,
) -> None:
    """Sign the drafts in FILE.jsonl and append them (to --db, or over the API at --url).

    Each line is a draft {"type", "body", "id"?, "at"?, "parents"?, "actor"?}
    (signed here; parents default to the lots' current heads) or an already
    signed {"envelope", "signature"} (sent as it is). Other members of a draft
    (e.g. an importer's "ticket") are ignored. Every refused line is listed
    (line, record id, code, path, message); the exit status is 1 if any was.
    """
    if url is not None and db is not None:
        raise click.UsageError("give --url (the API) or --db (a database), not both")
    if url is not None and not token:
        raise click.UsageError("--url needs a token: set RLEDGER_TOKEN (or pass --token)")
    try:
        lines = parse_lines(list(enumerate(file.read_text(encoding="utf-8").splitlines(), 1)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file}: {exc}; nothing was submitted") from None
    try:
        private = read_private_key(key_file)
    except ValueError as exc:
        raise click.ClickException(f"{key_file}: not a private key ({exc})") from None
    signer = Signer(actor or "", private)
    failure: str | None = None
    with tqdm(total=len(lines), unit="rec", disable=None, file=sys.stderr) as bar:
        if url is not None:
            failure = _submit_http(lines, signer, url, token or "", batch_size, atomic, bar.update)
        else:
            failure = _submit_db(lines, signer, db, batch_size, atomic, bar.update)
    refused = existing = unsent = 0
    for line in lines:
        if line.result is None:
            unsent += 1
        elif (why := line.refusal) is not None:
            refused += 1
            click.echo(f"line {line.number}: refused {why}", err=True)
        elif getattr(line.result, "existing", False):
            existing += 1
    appended = len(lines) - refused - unsent
    tally = f"{appended} appended, {refused} refused"
    if existing:
        tally += f" ({existing} of the appended were already stored)"
    if unsent:
        tally += f"; {unsent} not sent"
    click.echo(tally)
    if failure is not None:
        if appended or refused:
            failure += (
                "\nthe lines before the batch that failed were submitted; submitting the file "
                "again is safe for drafts with an id (stored records answer as already stored)"
            )
        raise click.ClickException(failure)
    if refused:
        sys.exit(1)


def _submit_db(
    lines: list[Any],
    signer: Signer,
    db: str | None,
    batch_size: int,
    atomic: bool,
    progress: Any,
) -> str | None:
    from producers.submit import check_actor

    store, _ = open_store(db)
    try:
        if not signer.actor:
            owner = store.key_owner(signer.key_id)
            if owner is None:
                raise click.ClickException(
                    "this key is not registered; pass --actor or add the key"
                )
            signer.actor = owner
        try:
            check_actor(lines, signer.actor)
        except ValueError as exc:
            raise click.ClickException(f"{exc}; nothing was submitted") from None
        for start in range(0, len(lines), batch_size):
            chunk = lines[start : start + batch_size]
            submit_lines(
                chunk, signer, lambda b: store.append(b, atomic=atomic), store.heads, atomic=atomic
            )
            progress(len(chunk))
    except LedgerError as exc:
        return str(exc)
    finally:
        store.close()
    return None


def _submit_http(
    lines: list[Any],
    signer: Signer,
    url: str,
    token: str,
    batch_size: int,
    atomic: bool,
    progress: Any,
) -> str | None:
    from producers.client import ClientError, LedgerClient
    from producers.submit import check_actor

    with LedgerClient(url, token) as client:
        try:
            if not signer.actor:
                signer.actor = _token_org(client)
            check_actor(lines, signer.actor)
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.ClickException(f"{exc}; nothing was submitted") from None
        try:
            client.sign_and_submit(
                lines, signer, batch_size=batch_size, atomic=atomic, on_batch=progress
            )
        except ClientError as exc:
            return str(exc)
    return None


def _token_org(client: Any) -> str:
    """The organisation the API token acts for (what a record's actor must be), if the
    API says (``viewer { org }``); otherwise the user must name it with --actor."""
    from producers.client import QueryError, RequestRejected

    try:
        data = client.query("query Viewer { viewer { org } }", retry=True)
    except (RequestRejected, QueryError):
        data = {}
    viewer = data.get("viewer")
    org = viewer.get("org") if isinstance(viewer, dict) else None
    if not isinstance(org, str):
        raise click.ClickException(
            "the API does not say which organisation this token is for; "
            "pass --actor ORG (the token's organisation)"
        )
    return org


def _report(results: list[Any], labels: list[str]) -> None:
    for label, result in zip(labels, results, strict=True):
        if not isinstance(result, Appended):
            raise click.ClickException(f"{label} refused: {result}")


@main.command()
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, envvar="RLEDGER_PORT")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes (uvicorn workers). Their appends take the database's one writer "
    "lock in turn; a batch that waits too long is answered 503 OVERLOADED, safe to retry "
    "(docs/adr/0002-single-sequencer.md).",
)
@click.option(
    "--verify-processes",
    default=1,
    show_default=True,
    type=click.IntRange(0, 64),
    help="Processes per server process that check canonical form and signatures "
    "(0: threads in the server process itself).",
)
@KEYS_OPTION
@click.option(
    "--checkpoint-every",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between signed checkpoints of the Merkle log, made when it has grown "
    "(0: only on demand). Needs the ledger key, <keys>/ledger.key.",
)
def serve(
    db: str | None,
    host: str,
    port: int,
    workers: int,
    verify_processes: int,
    keys_dir: Path | None,
    checkpoint_every: float,
) -> None:
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
    os.environ["RLEDGER_VERIFY_PROCESSES"] = str(verify_processes)
    ledger_key = (keys_dir or default_keys_dir(url)) / "ledger.key"
    if ledger_key.exists():
        os.environ["RLEDGER_LEDGER_KEY"] = str(ledger_key.resolve())
        os.environ["RLEDGER_CHECKPOINT_EVERY"] = str(checkpoint_every)
    else:
        click.echo(f"no ledger key at {ledger_key}: checkpoints will not be signed", err=True)
    click.echo(f"serving {_safe(url)} on http://{host}:{port}/graphql", err=True)
    uvicorn.run(
        "schema.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        log_config=_log_config(),
    )


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus the service's own ``rledger.*`` loggers (error references)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["fmt"] = "%(asctime)s %(levelprefix)s %(name)s: %(message)s"
    config["loggers"]["rledger"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


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
    """Revoke the token whose id is TOKEN_ID (see `token list`); running servers stop accepting
    it within 5 s (they cache a good token that long)."""
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


PROCESSES_OPTION = click.option(
    "--processes",
    default=None,
    type=click.IntRange(0, 64),
    help="Worker processes that read records and check their form and signatures while "
    "this one replays the rules in order (default: the number of CPUs; 0, or a ledger of "
    "at most 2,000 records: all in this process).",
)


@main.command()
@DB_OPTION
@KEYS_OPTION
@PROCESSES_OPTION
def verify(db: str | None, keys_dir: Path | None, processes: int | None) -> None:
    """Re-check every record: bytes, hash, signature, key validity, parents, mass balance,
    the Merkle log and its checkpoints (their signatures too when <keys>/ledger.key.pub
    is there)."""
    store, url = open_store(db)
    pub = (keys_dir or default_keys_dir(url)) / "ledger.key.pub"
    try:
        report = verify_store(
            store,
            checkpoint_key=read_public_key(pub) if pub.exists() else None,
            processes=(os.cpu_count() or 1) if processes is None else processes,
        )
    finally:
        store.close()
    click.echo(str(report))
    if not report.ok:
        sys.exit(1)


@main.command()
@DB_OPTION
@KEYS_OPTION
@click.option("--origin", default=None, help="The log's name (only for its first checkpoint).")
@click.option(
    "--verifier-key",
    "show_vkey",
    is_flag=True,
    help="Print only the verifier key auditors pin (<origin>+<key ID>+<base64 key>).",
)
def checkpoint(db: str | None, keys_dir: Path | None, origin: str | None, show_vkey: bool) -> None:
    """Sign a checkpoint of the Merkle log now (if it has grown since the last one) with the
    ledger key, and print it: a C2SP signed note (c2sp.org/tlog-checkpoint)."""
    from ledger.checkpoints import CheckpointError
    from ledger.merkle_log import Checkpointer, ProofUnavailable

    store, url = open_store(db)
    key_file = (keys_dir or default_keys_dir(url)) / "ledger.key"
    try:
        if not key_file.exists():
            raise click.ClickException(
                f"no ledger key at {key_file}: pass --keys DIR (the directory `rledger init` "
                "wrote ledger.key to)"
            )
        signer = Checkpointer.from_key_file(store.engine, key_file, origin=origin)
        if show_vkey:
            click.echo(signer.verifier_key)
            return
        made = signer.checkpoint()
    except (CheckpointError, ProofUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(made.note, nl=False)


@main.command("verify-bundle")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--verifier-key",
    "vkey",
    default=None,
    help="The ledger's verifier key (<origin>+<key ID>+<base64 key>: `rledger checkpoint "
    "--verifier-key` on its host), or a file holding it. Default: the key `rledger audit` "
    "pinned for the bundle's log in --state.",
)
@click.option(
    "--state",
    "state_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The audit state file holding pinned keys (default ~/.rledger-audit.json).",
)
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Accept a bundle that leaves out upstream lots the token could not read: every "
    "record it holds is checked, but the recovered content is not recomputed.",
)
def verify_bundle_cmd(
    file: Path, vkey: str | None, state_file: Path | None, allow_incomplete: bool
) -> None:
    """Check a provenance bundle (the `provenance(lot)` query's bundle, docs/bundle-format.md)
    offline: signatures, key validity, parents chains, mass balance, recovered content replayed
    through the ledger's rules, and inclusion of every record in the signed checkpoint. Exit 0
    when it verifies; 1 with the reason (naming the record) when it does not."""
    from producers.audit import AuditFailure, pinned_key, read_verifier_key, state_path
    from producers.verifier import BundleInvalid, load_bundle, verify_bundle

    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    try:
        doc = load_bundle(data)
        if vkey is not None:
            key = read_verifier_key(vkey)
        else:
            cp = doc.get("checkpoint")
            origin = cp.get("origin") if isinstance(cp, dict) else None
            found = pinned_key(state_path(state_file), origin) if isinstance(origin, str) else None
            if found is None:
                raise click.ClickException(
                    "no verifier key: pass --verifier-key (`rledger checkpoint --verifier-key` "
                    "on the ledger's host prints it), or pin it with `rledger audit`"
                )
            key = found
        result = verify_bundle(doc, key, allow_incomplete=allow_incomplete)
    except AuditFailure as exc:
        raise click.ClickException(exc.reason) from None
    except BundleInvalid as exc:
        click.echo(f"FAILED: {exc.reason}", err=True)
        sys.exit(1)
    click.echo(result.summary())
    for note in result.notes:
        click.echo(f"note: {note}")


@main.command()
@click.option("--url", required=True, help="The ledger's API (e.g. https://ledger.example).")
@click.option(
    "--token",
    default=None,
    envvar="RLEDGER_TOKEN",
    show_envvar=True,
    help="API token (prefer the environment variable: it stays out of shell history).",
)
@click.option(
    "--state",
    "state_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where this auditor keeps the last checkpoint it saw (default ~/.rledger-audit.json).",
)
@click.option(
    "--verifier-key",
    "vkey",
    default=None,
    help="The ledger's verifier key, or a file holding it; needed the first time (then pinned).",
)
def audit(url: str, token: str | None, state_file: Path | None, vkey: str | None) -> None:
    """Fetch the ledger's latest signed checkpoint, verify its signature, and check that it
    extends the last checkpoint this auditor saw (an RFC 9162 consistency proof); keep it.
    A rewritten history — a failed proof, a smaller tree, or the same size with another root —
    exits 1 with the reason and both signed notes as evidence (the state is left as it was)."""
    from producers.audit import AuditFailure, audit, read_verifier_key, state_path
    from producers.client import ClientError, LedgerClient

    if not token:
        raise click.UsageError("--url needs a token: set RLEDGER_TOKEN (or pass --token)")
    try:
        key = read_verifier_key(vkey) if vkey is not None else None
        with LedgerClient(url, token) as client:
            done = audit(client, url, state_path(state_file), key)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    except AuditFailure as exc:
        click.echo(f"FAILED: {exc.reason}", err=True)
        for note in exc.evidence:
            click.echo(
                f"\nevidence (a note signed by the ledger's key):\n{note}", err=True, nl=False
            )
        sys.exit(1)
    click.echo(done.summary())


@main.command("export")
@DB_OPTION
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def export_cmd(db: str | None, out: Path) -> None:
    """Write the whole ledger to OUT as an archive (docs/ledger-archive.md): its signed
    records, Merkle root and checkpoints. `rledger import` puts it into an empty ledger."""
    from ledger.archive import ArchiveError, export_ledger

    if out.exists():
        raise click.ClickException(f"{out} exists; choose another --out")
    partial = out.with_name(out.name + ".partial")
    store, _ = open_store(db)
    try:
        with partial.open("wb") as f:
            summary = export_ledger(store, f)
        partial.rename(out)
    except ArchiveError as exc:
        raise click.ClickException(f"{exc}; nothing was written to {out}") from None
    finally:
        store.close()
        partial.unlink(missing_ok=True)
    click.echo(
        f"{summary.records} records, {summary.checkpoints} checkpoints, root {summary.root} "
        f"-> {out}"
    )


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@DB_OPTION
@click.option(
    "--verifier-key",
    "vkey",
    default=None,
    help="Require every checkpoint to be signed by this ledger key "
    "(<origin>+<key ID>+<base64 key>, as `rledger checkpoint --verifier-key` prints it).",
)
@PROCESSES_OPTION
def import_cmd(file: Path, db: str | None, vkey: str | None, processes: int | None) -> None:
    """Put the archive FILE (from `rledger export`) into an empty ledger at --db.

    Everything is checked before anything is written — every signature, rule and the
    Merkle root against the archive's header and its signed checkpoints — and then again
    as the records go through the normal append path, each keeping its seq and
    recorded_at. A refused archive leaves the database as it was.
    """
    from ledger.archive import ArchiveError, import_ledger

    url = database_url(db)
    try:
        summary = import_ledger(
            url,
            file,
            verifier_key=vkey.strip() if vkey else None,
            processes=(os.cpu_count() or 1) if processes is None else processes,
        )
    except ArchiveError as exc:
        raise click.ClickException(f"{file.name} refused: {exc}") from None
    click.echo(
        f"imported {summary.records} records and {summary.checkpoints} checkpoints into "
        f"{_safe(url)}; root {summary.root}"
    )


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


@main.command("import-weighbridge")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Drafts (JSONL)."
)
@click.option("--site", default=None, help="Refuse the file unless every ticket is this org's.")
def import_weighbridge(file: Path, out: Path, site: str | None) -> None:
    """Turn weighbridge tickets (CSV, docs/weighbridge-csv.md) into drafts for `rledger submit`.

    in -> create, out -> transfer, received -> receive; masses in exact
    grams (net = gross - tare). Every bad row is listed (row, column, rule)
    and nothing is written if there is one. Importing a ticket again gives
    the same record id, so it can never be counted twice.
    """
    from producers.weighbridge import WeighbridgeError, read_tickets, write_drafts

    try:
        tickets = read_tickets(file)
    except WeighbridgeError as exc:
        for error in exc.errors:
            click.echo(f"{file.name}: {error}", err=True)
        raise click.ClickException(
            f"{len(exc.errors)} problem(s) in {file.name}; nothing was written to {out}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    if site is not None and tickets[0].site != site:
        raise click.ClickException(
            f"{file.name} holds {tickets[0].site}'s tickets, not {site}'s; nothing was written"
        )
    write_drafts([t.draft() for t in tickets], out)
    counts = {d: sum(t.direction == d for t in tickets) for d in ("in", "out", "received")}
    net_g = sum(t.net_g for t in tickets if t.direction == "in")
    click.echo(
        f"{len(tickets)} tickets of {tickets[0].site} -> {out}: {counts['in']} in (create, "
        f"{net_g // 1000:,}.{net_g % 1000:03d} kg net), {counts['out']} out (transfer), "
        f"{counts['received']} received (receive)"
    )
    click.echo(f"next: rledger submit {out} --key <{tickets[0].site}'s key> (--db … or --url …)")


@main.group()
def epcis() -> None:
    """GS1 EPCIS 2.0 JSON-LD: export records as events, import events as drafts."""


@epcis.command("export")
@DB_OPTION
@click.option("--lot", "lot_ids", multiple=True, help="Only the records of these lots.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def epcis_export(db: str | None, lot_ids: tuple[str, ...], out: Path) -> None:
    """Write the ledger's custody records (all, or those of --lot) as an EPCISDocument.

    Each event carries its GS1 event hash ID and the ledger record it stands for;
    the mapping is docs/epcis-mapping.md.
    """
    from sqlalchemy import select

    from ledger.tables import lot_records
    from producers.epcis import LedgerRecord, dumps, export_document

    store, _ = open_store(db)
    try:
        wanted: set[int] | None = None
        if lot_ids:
            with store.engine.connect() as conn:
                wanted = {
                    int(x)
                    for x in conn.execute(
                        select(lot_records.c.seq).where(lot_records.c.lot.in_(lot_ids))
                    ).scalars()
                }
        chosen = [
            LedgerRecord(r.seq, r.hash, json.loads(r.canonical))
            for r in store.records()
            if wanted is None or r.seq in wanted
        ]
        doc = export_document(chosen)
    finally:
        store.close()
    out.write_text(dumps(doc) + "\n", encoding="utf-8")
    events = len(doc["epcisBody"]["eventList"])
    click.echo(f"{events} EPCIS events from {len(chosen)} records -> {out}")


@epcis.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Drafts (JSONL)."
)
def epcis_import(file: Path, out: Path) -> None:
    """Turn an EPCIS 2.0 document into drafts for `rledger submit` (validated against the
    EPCIS JSON schema first; an event that can't be mapped is named, and nothing written)."""
    from producers.epcis import EpcisError, import_drafts, loads
    from producers.weighbridge import write_drafts

    try:
        drafts = import_drafts(loads(file.read_text(encoding="utf-8")))
    except (EpcisError, ValueError) as exc:
        raise click.ClickException(f"{file.name}: {exc}; nothing was written to {out}") from None
    write_drafts(drafts, out)
    click.echo(f"{len(drafts)} drafts -> {out}")
    click.echo(f"next: rledger submit {out} --key <the actor's key> (--db … or --url …)")


@main.command("simulate")
@click.option("--records", required=True, type=click.IntRange(0), help="Records beyond the setup.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--batch", "batch_size", default=500, show_default=True, type=click.IntRange(1, 5000))
@DB_OPTION
@KEYS_OPTION
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False, path_type=Path), help="NDJSON file."
)
@click.option("--url", default=None, help="Submit over the API at URL (after --setup-only).")
@click.option(
    "--tokens",
    "tokens_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON {org id: token} for --url (see --tokens-out).",
)
@click.option("--setup-only", is_flag=True, help="With --db: append only the setup records.")
@click.option(
    "--tokens-out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --db: issue a token per organisation and write them here (mode 0600).",
)
def simulate_cmd(
    records: int,
    seed: int,
    batch_size: int,
    db: str | None,
    keys_dir: Path | None,
    out: Path | None,
    url: str | None,
    tokens_file: Path | None,
    setup_only: bool,
    tokens_out: Path | None,
) -> None:
    """Generate a deterministic national network of RECORDS signed records (producers/simulate.py).

    One of: --db (a new ledger: migrates the database, writes the ledger and operator keys
    like `init`, appends the setup and then every record), --out FILE (NDJSON, setup first, one
    signed {"envelope", "signature"} a line, as `rledger submit` reads signed lines), or --url with
    --tokens (submits over the API, each organisation's batches with its own token; make the
    ledger and the token file first with --db … --setup-only --tokens-out FILE).
    """
    from producers.simulate import simulate

    if sum(x is not None for x in (db, out, url)) != 1:
        raise click.UsageError("give exactly one of --db, --out or --url")
    if url is not None and tokens_file is None:
        raise click.UsageError(
            "--url needs --tokens FILE (make it with --db … --setup-only --tokens-out FILE)"
        )
    if (setup_only or tokens_out is not None) and db is None:
        raise click.UsageError("--setup-only and --tokens-out go with --db")
    sim = simulate(records, seed)
    if out is not None:
        _simulate_out(sim, out, batch_size)
    elif url is not None:
        assert tokens_file is not None
        _simulate_http(sim, url, tokens_file, batch_size)
    else:
        _simulate_db(sim, db, keys_dir, batch_size, setup_only, tokens_out)


def _simulate_db(
    sim: Any,
    db: str | None,
    keys_dir: Path | None,
    batch_size: int,
    setup_only: bool,
    tokens_out: Path | None,
) -> None:
    from collections import deque

    url = database_url(db)
    keys_dir = keys_dir or default_keys_dir(url)
    for name in ("ledger.key", "operator.key"):
        if (keys_dir / name).exists():
            raise click.ClickException(f"{keys_dir / name} exists; choose another --keys directory")
    if tokens_out is not None and tokens_out.exists():
        raise click.ClickException(f"{tokens_out} exists; choose another --tokens-out file")
    migrate(url)
    store = Store.open(url)
    try:
        if store.last_seq() > 0:
            raise click.ClickException(
                f"{_safe(url)} already holds a ledger; simulate needs a new one (nothing changed)"
            )
        sim.write_keys(keys_dir)
        for start in range(0, len(sim.setup), batch_size):  # 6,800 records at 1,000,000
            chunk = sim.setup[start : start + batch_size]
            _check_simulated(store.append(chunk), chunk, "setup", start)
        written = 0
        if not setup_only:
            sent: deque[Any] = deque()

            def feed() -> Any:
                for batch in sim.chunks(batch_size):
                    sent.append(batch)
                    yield batch.records

            with tqdm(total=sim.records, unit="rec", disable=None, file=sys.stderr) as bar:
                for results in store.append_stream(feed()):
                    batch = sent.popleft()
                    _check_simulated(results, batch.records, "a batch", written)
                    written += len(results)
                    bar.update(len(results))
        if tokens_out is not None:
            tokens = {o.id: issue_token(store.engine, o.id, label="simulate") for o in sim.orgs}
            _write_secret_json(tokens_out, tokens)
    finally:
        store.close()
    click.echo(
        f"{written} records (+{len(sim.setup)} setup) from {len(sim.orgs)} organisations "
        f"appended to {_safe(url)}; keys in {keys_dir}"
        + (f"; tokens in {tokens_out}" if tokens_out is not None else "")
    )


def _check_simulated(results: list[Any], batch: list[Any], what: str, before: int = 0) -> None:
    for i, (result, rec) in enumerate(zip(results, batch, strict=True)):
        if not isinstance(result, Appended):
            record_id = json.loads(rec.envelope)["id"]
            raise click.ClickException(
                f"{what}: record {record_id} (the {before + i + 1}th) was refused: {result}; "
                "the batches before it are written — simulate into a new, empty ledger"
            )


def _write_secret_json(path: Path, value: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")
    os.chmod(path, 0o600)


def _simulate_out(sim: Any, out: Path, batch_size: int) -> None:
    with (
        out.open("w", encoding="utf-8") as f,
        tqdm(total=sim.records, unit="rec", disable=None, file=sys.stderr) as bar,
    ):
        for rec in sim.setup:
            f.write(json.dumps({"envelope": rec.envelope, "signature": rec.signature}) + "\n")
        for batch in sim.batches(batch_size):
            for rec in batch.records:
                f.write(json.dumps({"envelope": rec.envelope, "signature": rec.signature}) + "\n")
            bar.update(len(batch.records))
    click.echo(f"{len(sim.setup)} setup + {sim.records} records -> {out}")


def _simulate_http(sim: Any, url: str, tokens_file: Path, batch_size: int) -> None:
    import httpx

    from producers.client import ClientError, LedgerClient
    from producers.results import Recorded

    try:
        tokens = json.loads(tokens_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{tokens_file}: not a JSON object of tokens ({exc})") from None
    if not isinstance(tokens, dict):
        raise click.ClickException(f"{tokens_file}: not a JSON object {{org id: token}}")
    missing = sorted({o.id for o in sim.orgs} - set(tokens))
    if missing:
        raise click.ClickException(
            f"{tokens_file} has no token for {missing[0]} (and {len(missing) - 1} more); make "
            "the file with `rledger simulate --db … --setup-only --tokens-out FILE` and the "
            "same --records and --seed"
        )
    sent = existing = 0
    with (
        httpx.Client(timeout=120.0) as http,
        tqdm(total=sim.records, unit="rec", disable=None, file=sys.stderr) as bar,
    ):
        clients: dict[str, LedgerClient] = {}
        for batch in sim.batches(batch_size):
            client = clients.get(batch.org)
            if client is None:
                client = clients[batch.org] = LedgerClient(url, tokens[batch.org], client=http)
            try:
                results = client.submit(batch.records, batch_size=len(batch.records))
            except ClientError as exc:
                raise click.ClickException(
                    f"{exc} (after {sent} records were stored); submitting again is safe: "
                    "stored records answer as already stored"
                ) from None
            for i, (result, digest) in enumerate(zip(results, batch.hashes, strict=True)):
                if not isinstance(result, Recorded) or result.hash != digest:
                    raise click.ClickException(
                        f"a batch of {batch.org}: its record {i + 1} was not recorded: {result}; "
                        f"{sent} records before it were stored (was the setup appended with "
                        "--db … --setup-only?)"
                    )
                existing += result.existing
            sent += len(results)
            bar.update(len(results))
    click.echo(
        f"{sent} records submitted to {url}"
        + (f" ({existing} were already stored)" if existing else "")
    )


if __name__ == "__main__":
    main()
