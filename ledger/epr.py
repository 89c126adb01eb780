"""The EPR rules: declarations, certificates and their transfer and retirement (DESIGN.md "EPR").

Pure functions of (envelope, state, seq), called by :mod:`ledger.rules` after the key
check. Schemes are data (:mod:`ledger.epr_schemes`).

What makes double counting impossible, record by record:

- a certificate stands on named lots, each the output of a transform of an *eligible*
  process and material, made by the certifying recycler itself, in the certificate's
  period, never disposed of nor voided;
- on each such lot, the grams all certificates stand on never exceed the lot's recovered
  output (its recovered mass when made, computed by the ledger — ADR 0005), across every
  scheme: a recovered gram counts once;
- a certificate moves only by its holder, is retired by its holder against its own
  period, once, and never moves afterwards;
- a transform whose outputs back a certificate can't be voided (``void.certified``).

EPR records change no lot, so they name no ``parents``.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.envelope import Envelope
from ledger.epr_schemes import Category, Scheme, default_schemes
from ledger.errors import RecordRefused
from ledger.state import DISPOSED, VOID, Certificate, Declaration, Effects, Output, StateView


def _no_parents(env: Envelope) -> None:
    for lot_id in env.parents:
        raise RecordRefused(
            "parents.unexpected",
            f"{env.type} records change no lot; leave {lot_id} out of parents",
            path=f"parents.{lot_id}",
        )


def _role(env: Envelope, state: StateView, role: str) -> None:
    org = state.org(env.actor)
    if org is None or not org.has_role(role):
        raise RecordRefused(
            "org.not_permitted",
            f"{env.type} records are signed by a {role}; {env.actor} is not registered as one",
            path="actor",
        )


def _scheme(env: Envelope) -> tuple[Scheme, Category]:
    b = env.body
    scheme = default_schemes().get(b["scheme"])
    if scheme is None:
        raise RecordRefused(
            "epr.scheme_unknown",
            f"no EPR scheme {b['scheme']!r}; the schemes are listed by the eprSchemes query",
            path="body.scheme",
        )
    category = scheme.categories.get(b["category"])
    if category is None:
        raise RecordRefused(
            "epr.category_unknown",
            f"{scheme.id} has no category {b['category']!r} (it has: "
            f"{', '.join(sorted(scheme.categories))})",
            path="body.category",
        )
    if not scheme.period_ok(b["period"]):
        raise RecordRefused(
            "epr.period",
            f"{scheme.id} counts by {scheme.period_hint}: {b['period']!r} is not one",
            path="body.period",
        )
    return scheme, category


def declare(env: Envelope, state: StateView, seq: int) -> Effects:
    """A producer's placed-on-market mass for one scheme, category and period."""
    _no_parents(env)
    _role(env, state, "producer")
    _scheme(env)
    b = env.body
    return Effects(
        declarations=[
            Declaration(
                seq, env.actor, b["scheme"], b["category"], b["period"], b["mass_g"], b.get("units")
            )
        ]
    )


def certify(env: Envelope, state: StateView, seq: int) -> Effects:
    """A recycler's certificate against the recovered output of its own eligible transforms."""
    _no_parents(env)
    _role(env, state, "recycler")
    scheme, category = _scheme(env)
    b = env.body
    if state.certificate(b["certificate"]) is not None:
        raise RecordRefused(
            "certificate.exists",
            f"certificate {b['certificate']} already exists; choose a new id",
            path="body.certificate",
        )
    total = sum(item["mass_g"] for item in b["lots"])
    if total != b["mass_g"]:
        raise RecordRefused(
            "mass.unbalanced",
            f"the backing lots add up to {total} g, not the certificate's {b['mass_g']} g",
            path="body.mass_g",
        )
    measure = category.element or "mass"
    unit = f"g of {measure}" if category.element else "g"
    changed: list[Output] = []
    seen: set[str] = set()
    for i, item in enumerate(b["lots"]):
        path = f"body.lots[{i}]"
        lot_id = item["lot"]
        if lot_id in seen:
            raise RecordRefused("lot.duplicate", f"{lot_id} appears twice", path=f"{path}.lot")
        seen.add(lot_id)
        made = state.output(lot_id)
        lot = state.lot(lot_id)
        if made is None or lot is None:
            raise RecordRefused(
                "certificate.not_output",
                f"{lot_id} is not the output of a transform: certificates stand on recovered "
                "output only",
                path=f"{path}.lot",
            )
        if made.actor != env.actor:
            raise RecordRefused(
                "certificate.not_producer",
                f"{lot_id} was produced by {made.actor}: only the recycler that produced an "
                "output certifies it",
                path=f"{path}.lot",
            )
        if not (
            category.eligible_process(made.process) and category.eligible_output(made.material)
        ):
            raise RecordRefused(
                "certificate.ineligible",
                f"{lot_id} ({made.material} from {made.process}) is not eligible under "
                f"{scheme.id} {category.code}",
                path=f"{path}.lot",
            )
        if lot.status in (DISPOSED, VOID) or lot.disposed_g:
            raise RecordRefused(
                "certificate.disposed",
                f"{lot_id} is {'void' if lot.status == VOID else 'disposed of'}: disposed or "
                "voided material is not recovered and backs no certificate",
                path=f"{path}.lot",
            )
        if not scheme.contains(b["period"], made.at):
            raise RecordRefused(
                "epr.period",
                f"{lot_id} was produced at {made.at}, outside {b['period']}; certify it in "
                f"{scheme.period_of(made.at)}",
                path="body.period",
            )
        recovered = made.recovered.get(measure, 0)
        certified = made.certified.get(measure, 0)
        if item["mass_g"] > recovered - certified:
            raise RecordRefused(
                "certificate.exceeds_output",
                f"{lot_id} has {recovered} {unit} of recovered output and certificates already "
                f"stand on {certified} {unit}: at most {recovered - certified} {unit} is left "
                "to certify",
                path=f"{path}.mass_g",
            )
        changed.append(
            replace(made, certified=made.certified | {measure: certified + item["mass_g"]})
        )
    cert = Certificate(
        b["certificate"],
        scheme.id,
        category.code,
        b["period"],
        env.actor,
        env.actor,
        b["mass_g"],
        tuple((item["lot"], item["mass_g"]) for item in b["lots"]),
        seq,
        seq,
    )
    return Effects(outputs=changed, certificates=[cert])


def _held(env: Envelope, state: StateView) -> Certificate:
    cert = state.certificate(env.body["certificate"])
    if cert is None:
        raise RecordRefused(
            "certificate.unknown",
            f"no certificate {env.body['certificate']}",
            path="body.certificate",
        )
    if cert.holder != env.actor:
        raise RecordRefused(
            "certificate.not_holder",
            f"{cert.id} is held by {cert.holder}; only its holder may move or retire it",
            path="actor",
        )
    if cert.retired:
        raise RecordRefused(
            "certificate.retired",
            f"{cert.id} was retired against {cert.retired_period}; a certificate is retired "
            "once and never moves afterwards",
            path="body.certificate",
        )
    return cert


def certificate_transfer(env: Envelope, state: StateView, seq: int) -> Effects:
    _no_parents(env)
    cert = _held(env, state)
    to = env.body["to"]
    if to == env.actor:
        raise RecordRefused("envelope.field", "the certificate is already yours", path="body.to")
    if state.org(to) is None:
        raise RecordRefused("org.unknown", f"{to} is not registered", path="body.to")
    return Effects(certificates=[replace(cert, holder=to, updated_seq=seq)])


def certificate_retire(env: Envelope, state: StateView, seq: int) -> Effects:
    _no_parents(env)
    cert = _held(env, state)
    period = env.body["period"]
    if period != cert.period:
        raise RecordRefused(
            "epr.period",
            f"{cert.id} is evidence for {cert.period}; it can only be retired against "
            f"{cert.period}, not {period}",
            path="body.period",
        )
    return Effects(certificates=[replace(cert, retired_period=period, updated_seq=seq)])
