"""No API token and no private key in any log line or CLI output; key files 0600 in
0700 directories; a revoked token refused at once by a running server (2 workers with
RLEDGER_LONG=1).

What runs (one demo ledger for the module, about 10 s in all):

* the CLI, in-process (click's runner): ``demo --months 1`` (creates the ledger and its
  keys), ``keygen``, ``org add``, ``token create`` ×4, ``token list``, ``token revoke``,
  ``submit --url`` with a good, a revoked and a made-up token and a file of bad drafts,
  ``audit`` with a revoked token;
* ``rledger serve`` (tests/server_process.py; ``--workers 2`` with RLEDGER_LONG=1) with ``RLEDGER_TOKEN_TTL=0``
  and a low per-token rate limit, and requests with valid, unknown, malformed and
  revoked tokens, bad records, unparsable and invalid queries with the token in the
  query text and in variables (POST and GET, where it lands in the URL), a read over
  the rate limit;
* the same hostile requests in-process on SQLite and PostgreSQL with every logger
  captured at DEBUG (so an INTERNAL error's traceback, logged by schema/errors.py,
  is searched too): a NUL character in a variable makes PostgreSQL fail mid-query.

Then every secret is searched for in the server's log (both workers), the captured
log records and every CLI output: each token, its secret, the first and last 12
characters of the secret, ``rlt_<id>_`` + the secret's first 4, SHA-256 of the token
(hex and its first 16), and each private key's 32 seed bytes as hex, base64 and
base64url, its PEM body. The outputs whose purpose is to show a new token once
(``token create``; ``demo``'s token list) are searched for keys only, and must hold
exactly the tokens they issue.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import World
from read_network import Api
from reliability import tally
from server_process import running_server

from ledger.database import database_url
from ledger.signing import Ed25519PrivateKey
from ledger.tokens import issue_token, revoke_token, token_id_of
from producers.cli import main
from producers.keyfiles import read_private_key
from schema.loaders import Loaders
from schema.log_redaction import QueryStringRedactor, TokenRedactor, redact_query, redact_tokens

# Two server processes show revocation and the limits per process; starting the second
# costs 5-10 s on a loaded 2-core machine, so CI runs one and RLEDGER_LONG=1 runs two.
WORKERS = 2 if os.environ.get("RLEDGER_LONG") else 1
TOKEN_RE = re.compile(r"rlt_[a-z2-7]{12}_[A-Za-z0-9_-]{43}")


def private_seed(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def token_needles(token: str) -> list[str]:
    token_id, secret = token.split("_", 2)[1:]
    digest = hashlib.sha256(token.encode()).hexdigest()
    return [
        token,
        secret,
        secret[:12],
        secret[-12:],
        f"rlt_{token_id}_{secret[:4]}",
        digest,
        digest[:16],
    ]


def key_needles(path: Path) -> list[str]:
    seed = private_seed(read_private_key(path))
    pem = path.read_text()
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    b64 = base64.b64encode(seed).decode()
    return [
        seed.hex(),
        seed.hex().upper(),
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(seed).decode().rstrip("="),
        *body,
        "PRIVATE KEY",
    ]


def leaks(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n and n in text]


@dataclass
class Ledger:
    dir: Path
    db: str
    keys: Path
    runner: CliRunner
    outputs: dict[str, str] = field(default_factory=dict)  # label -> what the CLI printed
    shown: dict[str, str] = field(default_factory=dict)  # label -> output that shows tokens
    tokens: dict[str, str] = field(default_factory=dict)

    def cli(
        self, label: str, *args: str, ok: bool = True, env: dict[str, str] | None = None
    ) -> Result:
        result = self.runner.invoke(main, list(args), env=env, catch_exceptions=False)
        if ok and result.exit_code != 0:
            raise AssertionError(f"rledger {' '.join(args)}: {result.output}")
        self.outputs[label] = result.output
        return result


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    tmp = tmp_path_factory.mktemp("secrets")
    db = database_url(str(tmp / "ledger.db"))
    led = Ledger(tmp, db, tmp / "private" / "keys", CliRunner())
    demo = led.cli("demo", "demo", "--db", db, "--keys", str(led.keys), "--months", "1")
    led.shown["demo"] = led.outputs.pop("demo")
    for t in TOKEN_RE.findall(demo.output):
        led.tokens[f"demo-{len(led.tokens)}"] = t
    acme_key = tmp / "org-keys" / "deep" / "acme.key"
    led.cli("keygen", "keygen", "--out", str(acme_key))
    led.cli(
        "org add",
        *("org", "add", "org:acme", "--role", "collector", "--region", "CN-GD"),
        *("--key", f"{acme_key}.pub", "--db", db, "--keys", str(led.keys)),
    )
    for name in ("good", "revoked", "limited", "other"):
        out = led.cli(f"token create {name}", "token", "create", "--org", "org:acme", "--db", db)
        led.shown[f"token create {name}"] = led.outputs.pop(f"token create {name}")
        [token] = TOKEN_RE.findall(out.output)
        assert out.output == token + "\n", "token create prints the token alone"
        led.tokens[name] = token
    yield led


def all_needles(led: Ledger) -> list[str]:
    out = [n for t in led.tokens.values() for n in token_needles(t)]
    for path in (
        led.keys / "ledger.key",
        led.keys / "operator.key",
        led.dir / "org-keys" / "deep" / "acme.key",
    ):
        out += key_needles(path)
    return out


def test_key_files_are_0600_in_0700_directories(ledger: Ledger) -> None:
    """demo (through init) and keygen: each private key 0600; every directory they made
    0700; a public key may be read by anyone."""
    keys = ledger.keys
    acme = ledger.dir / "org-keys" / "deep" / "acme.key"
    private = [keys / "ledger.key", keys / "operator.key", acme]
    made_dirs = [keys, keys.parent, acme.parent, acme.parent.parent]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for d in made_dirs:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert (acme.parent / "acme.key.pub").exists()
    # keygen into an existing directory leaves that directory alone (it may be the cwd)
    out = ledger.dir / "existing"
    out.mkdir(mode=0o755)
    ledger.runner.invoke(main, ["keygen", "--out", str(out / "k.key")], catch_exceptions=False)
    assert stat.S_IMODE((out / "k.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    tally(
        "private key files and key directories written by the CLI checked 0600 / 0700",
        tried=len(private) + len(made_dirs) + 1,
        held=len(private) + len(made_dirs) + 1,
        unit="files",
    )


VIEWER = "{ viewer { org } }"


def hostile_requests(token: str, others: dict[str, str]) -> list[dict[str, Any]]:
    """Requests that fail in every way a client can make them fail, each carrying ``token``
    somewhere a careless server might echo or log it."""
    token_id = token_id_of(token) or ""
    bad_drafts = [
        {"envelope": "{not json " + token, "signature": "AAAA"},
        {
            "envelope": json.dumps({"v": 1, "type": "create", "body": {"lot": token}}),
            "signature": token,
        },
    ]
    write = "mutation($e: [SignedEvent!]!) { recordEvents(events: $e) { __typename ... on Rejected { code message } } }"
    return [
        {"auth": token, "json": {"query": VIEWER}},
        {"auth": token, "json": {"query": write, "variables": {"e": bad_drafts}}},
        {"auth": token, "json": {"query": '{ lot(id: "' + token + '") { id  }'}},  # parse error
        {"auth": token, "json": {"query": "{ " + token.replace("-", "_") + " }"}},  # validation
        {
            "auth": token,
            "json": {
                "query": "query($n: Int!) { lots(first: $n) { edges { cursor } } }",
                "variables": {"n": token},
            },
        },
        {
            "auth": token,
            "json": {
                "query": "query($h: String!) { event(hash: $h) { hash } }",
                "variables": {"h": token},
            },
        },
        {
            "auth": token,
            "json": {
                "query": "query($c: String!) { battery(code: $c) { code } }",
                "variables": {"c": token},
            },
        },
        {
            "auth": token,
            "json": {
                "query": "query($l: ID!) { lot(id: $l) { id } }",
                "variables": {"l": token + "\u0000"},
            },
        },
        {
            "auth": token,
            "json": {
                "query": "query($a: String) { lots(after: $a) { edges { cursor } } }",
                "variables": {"a": token},
            },
        },
        {
            "auth": token,
            "get": {
                "query": "query($h: String!) { event(hash: $h) { hash } }",
                "variables": json.dumps({"h": token}),
            },
        },
        {"auth": token, "json": {"query": VIEWER, "variables": [token]}},
        {"auth": token, "raw": ("{" + token).encode()},
        {
            "auth": f"rlt_{token_id}_" + "A" * 43,
            "json": {"query": VIEWER},
        },  # right id, wrong secret
        {"auth": token + "x", "json": {"query": VIEWER}},
        {"header": f"Basic {base64.b64encode(token.encode()).decode()}", "json": {"query": VIEWER}},
        {"header": f"Bearer {token} {token}", "json": {"query": VIEWER}},
        {"header": f"bearer {token}", "json": {"query": VIEWER}},
        *({"auth": t, "json": {"query": VIEWER}} for t in others.values()),
    ]


def send(client: httpx.Client, url: str, req: dict[str, Any]) -> httpx.Response:
    headers = {}
    if "auth" in req:
        headers["Authorization"] = f"Bearer {req['auth']}"
    elif "header" in req:
        headers["Authorization"] = req["header"]
    if "get" in req:
        return client.get(url, params=req["get"], headers=headers)
    if "raw" in req:
        headers["Content-Type"] = "application/json"
        return client.post(url, content=req["raw"], headers=headers)
    return client.post(url, json=req["json"], headers=headers)


def test_no_secret_in_the_server_log_or_the_cli_output(ledger: Ledger) -> None:
    led = ledger
    good, revoked, limited = led.tokens["good"], led.tokens["revoked"], led.tokens["limited"]
    env = {"RLEDGER_TOKEN_TTL": "0", "RLEDGER_RATE_LIMIT": "1", "RLEDGER_RATE_BURST": "40"}
    statuses: dict[int, int] = {}
    with (
        running_server(led.db, workers=WORKERS, env=env, log_dir=led.dir) as server,
        httpx.Client(timeout=30) as client,
    ):
        url = server.graphql
        # revocation at once across both workers: every request before is served,
        # every request after refused (no token cache)
        before = [
            client.post(url, json={"query": VIEWER}, headers={"Authorization": f"Bearer {revoked}"})
            for _ in range(8)
        ]
        assert [r.status_code for r in before] == [200] * 8
        led.cli("token revoke", "token", "revoke", token_id_of(revoked) or "", "--db", led.db)
        after = [
            client.post(url, json={"query": VIEWER}, headers={"Authorization": f"Bearer {revoked}"})
            for _ in range(12)
        ]
        assert [r.status_code for r in after] == [401] * 12
        tally(
            "requests with a revoked token on a running server (no token cache)",
            tried=len(after),
            held=sum(r.status_code == 401 for r in after),
            unit="requests",
            note="refused from the first request after `rledger token revoke`",
        )
        for token in (good, revoked):
            for req in hostile_requests(token, {}):
                r = send(client, url, req)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, (r.status_code, r.text[:300])
                assert "Traceback" not in r.text
        # over the rate limit: 429 with Retry-After (40 per server process, plus 1 a second)
        limited_answers = [
            send(client, url, {"auth": limited, "json": {"query": VIEWER}}) for _ in range(100)
        ]
        over = [r for r in limited_answers if r.status_code == 429]
        assert over and all(r.headers.get("retry-after", "").isdigit() for r in over)
        assert all(r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED" for r in over)
        other = send(client, url, {"auth": led.tokens["other"], "json": {"query": VIEWER}})
        assert other.status_code == 200, "another token of the same org is not slowed"
        # the CLI against the server: good, revoked and made-up tokens, bad drafts
        drafts = led.dir / "drafts.jsonl"
        drafts.write_text(
            json.dumps(
                {
                    "type": "create",
                    "body": {
                        "lot": "lot:ok-1",
                        "material": "paper.occ",
                        "mass_g": 1000,
                        "origin": "post_consumer",
                    },
                }
            )
            + "\n"
            + json.dumps(
                {"type": "create", "body": {"lot": good, "material": "no.such", "mass_g": -1}}
            )
            + "\n"
        )
        acme_key = str(led.dir / "org-keys" / "deep" / "acme.key")
        for label, token in (
            ("good", good),
            ("revoked", revoked),
            ("made-up", "rlt_aaaaaaaaaaaa_" + good.split("_", 2)[2]),
        ):
            led.cli(
                f"submit {label}",
                "submit",
                str(drafts),
                "--key",
                acme_key,
                "--url",
                server.url,
                "--token",
                token,
                ok=False,
            )
            led.cli(
                f"submit env {label}",
                "submit",
                str(drafts),
                "--key",
                acme_key,
                "--url",
                server.url,
                ok=False,
                env={"RLEDGER_TOKEN": token},
            )
        led.cli(
            "audit revoked",
            "audit",
            "--url",
            server.url,
            "--token",
            revoked,
            "--state",
            str(led.dir / "audit.json"),
            ok=False,
        )
        led.cli(
            "audit good",
            "audit",
            "--url",
            server.url,
            "--token",
            good,
            "--state",
            str(led.dir / "audit.json"),
            ok=False,
        )
    assert "appended" in led.outputs["submit good"]
    led.cli("token list", "token", "list", "--db", led.db)
    log = server.log()
    assert "Uvicorn running" in log or "Application startup complete" in log  # the log is real
    needles = all_needles(led)
    # GET requests are in the access log, without their query strings' values
    assert '"GET /graphql?query=…&variables=… HTTP/1.1" 200' in log
    texts = {"server log": log, **led.outputs}
    found = {label: leaks(text + unquote_plus(text), needles) for label, text in texts.items()}
    found = {k: v for k, v in found.items() if v}
    # outputs that show a new token once: no key, and no token but the ones they issued
    keys_only = [n for p in ("ledger.key", "operator.key") for n in key_needles(led.keys / p)]
    for label, text in led.shown.items():
        assert not leaks(text, keys_only), label
        assert set(TOKEN_RE.findall(text)) <= set(led.tokens.values())
    searched = 1 + len(led.outputs)
    tally(
        "server logs and CLI outputs searched for tokens and private keys",
        tried=searched,
        held=searched - len(found),
        unit="logs",
        note=f"{len(needles)} secret strings; valid, unknown, malformed and revoked tokens; "
        "bad records and queries",
    )
    assert not found, f"secrets found: {found}"


def test_no_secret_in_any_log_record_in_process(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every logger at DEBUG while the hostile requests run in-process (an INTERNAL error's
    traceback included); on PostgreSQL a NUL character in a variable fails the query."""
    world.admit("org:acme", ["collector"])
    api = Api(world)
    engine = world.store.engine
    good = issue_token(engine, "org:acme")
    revoked = issue_token(engine, "org:acme")
    revoke_token(engine, token_id_of(revoked) or "")
    needles = [n for t in (good, revoked) for n in token_needles(t)]
    caplog.set_level(logging.DEBUG)
    statuses = []
    for token in (good, revoked):
        for req in hostile_requests(token, {}):
            variables = req.get("json", {}).get("variables")
            if "json" not in req or isinstance(variables, list):
                continue  # Api posts a JSON object; the served test sends these
            answer = api.ask(
                req.get("auth"), req["json"]["query"], variables, authorization=req.get("header")
            )
            statuses.append(answer.status)
            assert answer.status < 500 or answer.codes == ["INTERNAL"], answer.body
            assert "Traceback" not in json.dumps(answer.body)

    # an internal error whose exception quotes the input: the traceback is logged, the
    # token in it is not
    async def failing_lineage(self: Any, lot: str, *_: Any) -> None:
        raise ValueError(f"cannot walk {lot!r}")

    monkeypatch.setattr(Loaders, "lineage", failing_lineage)
    answer = api.ask(good, "query($l: ID!) { lineage(lot: $l) { nodes { id } } }", {"l": good})
    assert answer.codes == ["INTERNAL"] and good not in json.dumps(answer.body)
    statuses.append(answer.status)
    internal = [r for r in caplog.records if r.getMessage().startswith("internal error")]
    assert len(internal) == 1 and internal[0].exc_info is not None
    assert f"cannot walk 'rlt_{token_id_of(good)}_…'" in caplog.text, "the traceback is logged"
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    formatted = caplog.text
    assert not leaks(text + formatted, needles), leaks(text + formatted, needles)
    tally(
        "hostile requests with tokens in headers, queries and variables (logs searched)",
        tried=len(statuses),
        held=len(statuses),
        unit="requests",
        note="every logger at DEBUG; SQLite and PostgreSQL",
    )


def test_the_access_log_keeps_parameter_names_only() -> None:
    assert redact_query("/graphql") == "/graphql"
    assert redact_query("/graphql?query=%7B+x+%7D&variables=%7B%22a%22%3A1%7D") == (
        "/graphql?query=…&variables=…"
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/graphql?token=rlt_secret", "1.1", 200),
        None,
    )
    assert QueryStringRedactor().filter(record)
    assert record.getMessage() == '127.0.0.1:1 - "GET /graphql?token=… HTTP/1.1" 200'


def test_tokens_are_cut_from_log_text() -> None:
    token = "rlt_abcdefghijkl_" + "Zz-_" * 10 + "abc"
    assert redact_tokens(f"got {token}!") == "got rlt_abcdefghijkl_…!"
    assert redact_tokens("rlt_abcdefghijkl_short") == "rlt_abcdefghijkl_short"  # 5 chars: no secret
    assert redact_tokens("nothing here") == "nothing here"
    try:
        raise ValueError(f"bad {token}")
    except ValueError:
        record = logging.LogRecord(
            "rledger.api", logging.ERROR, "", 0, "failed %s", (token,), sys.exc_info()
        )
    assert TokenRedactor().filter(record)
    formatted = logging.Formatter().format(record)
    assert token not in formatted and "ValueError: bad rlt_abcdefghijkl_…" in formatted
