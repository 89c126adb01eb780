"""Extended producer responsibility (EPR) schemes as data: categories, periods, targets.

The schemes live in the packaged file ``ledger/data/epr_schemes.toml`` (each figure's source
named there); this module parses and validates them into immutable records. Pure: no I/O
beyond reading the packaged file once, no floats — targets are integer basis points.

A scheme counts by one kind of period (:data:`PERIOD_KINDS`); period texts of one kind sort
as strings in time order ("2026-Q1" < "2026-Q2", "2025-26" < "2026-27"), which is how a
category's stepped ``targets`` are looked up.

Material matching (``declared`` and ``outputs``) is on whole dotted segments: the entry
"plastics" matches "plastics" and "plastics.pet_flake" but "plastic" matches neither.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Final

from ledger.materials import Taxonomy, default_taxonomy

__all__ = [
    "BASES",
    "PERIOD_KINDS",
    "Category",
    "Scheme",
    "default_schemes",
    "obligation_g",
    "parse_schemes",
]

BASES: Final = frozenset({"collection", "recycling", "material_recovery"})
_BP_PER_UNIT: Final = 10_000
_DATA_FILE: Final = "epr_schemes.toml"

_SCHEME_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_CATEGORY_RE: Final = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
# ISO 3166-1 alpha-2 ("IN"; "EU" is exceptionally reserved for the European Union), optionally
# an ISO 3166-2 subdivision ("IN-MH", "US-CA").
_JURISDICTION_RE: Final = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")

_SCHEME_KEYS: Final = frozenset({"id", "name", "jurisdiction", "period", "source", "categories"})
_CATEGORY_REQUIRED: Final = frozenset(
    {"code", "name", "basis", "targets", "declared", "processes", "outputs"}
)
_CATEGORY_KEYS: Final = _CATEGORY_REQUIRED | {"element", "source"}

# Periods are whole UTC years from 1900 to 9998 so that every bound is a 4-digit-year time.
_MIN_YEAR: Final = 1900
_MAX_YEAR: Final = 9998


# --- periods ---------------------------------------------------------------------


def _utc(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}-01T00:00:00Z"


def _year_in_range(year: int) -> bool:
    return _MIN_YEAR <= year <= _MAX_YEAR


@dataclass(frozen=True, slots=True)
class _Kind:
    hint: str  # how to write one, for messages
    pattern: re.Pattern[str]
    # (year, n) from the regex groups -> (start year, start month, months long)
    span: Callable[[int, int], tuple[int, int, int]]
    # (year, month) of an instant -> period text
    name: Callable[[int, int], str]


def _april_name(year: int, month: int) -> str:
    first = year if month >= 4 else year - 1
    return f"{first:04d}-{(first + 1) % 100:02d}"


PERIOD_KINDS: Final[Mapping[str, _Kind]] = MappingProxyType(
    {
        "year": _Kind(
            "a calendar year like 2026",
            re.compile(r"([0-9]{4})"),
            lambda y, _n: (y, 1, 12),
            lambda y, _m: f"{y:04d}",
        ),
        "half": _Kind(
            "a calendar half-year like 2026-H1 (H1 = January-June, H2 = July-December)",
            re.compile(r"([0-9]{4})-H([12])"),
            lambda y, n: (y, 6 * (n - 1) + 1, 6),
            lambda y, m: f"{y:04d}-H{(m - 1) // 6 + 1}",
        ),
        "quarter": _Kind(
            "a calendar quarter like 2026-Q1 (Q1 = January-March)",
            re.compile(r"([0-9]{4})-Q([1-4])"),
            lambda y, n: (y, 3 * (n - 1) + 1, 3),
            lambda y, m: f"{y:04d}-Q{(m - 1) // 3 + 1}",
        ),
        # India's financial year, 1 April to 31 March, written "2025-26".
        "year_april": _Kind(
            "an April-to-March year like 2025-26 (1 April 2025 to 31 March 2026)",
            re.compile(r"([0-9]{4})-([0-9]{2})"),
            lambda y, _n: (y, 4, 12),
            _april_name,
        ),
    }
)


def _parse_period(kind: str, period: str) -> tuple[int, int, int] | None:
    """(start year, start month, months) of ``period`` if it is of ``kind``, else None."""
    spec = PERIOD_KINDS[kind]
    m = spec.pattern.fullmatch(period) if isinstance(period, str) else None
    if m is None:
        return None
    year = int(m.group(1))
    n = int(m.group(2)) if m.lastindex and m.lastindex >= 2 else 0
    if kind == "year_april" and n != (year + 1) % 100:
        return None
    if not _year_in_range(year):
        return None
    return spec.span(year, n)


def _parse_at(at: str) -> datetime:
    """An RFC 3339 time with an offset ("Z" or "+01:00"), as an aware UTC datetime."""
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00").replace("z", "+00:00"))
    except (TypeError, ValueError, AttributeError):
        raise ValueError(
            f"{at!r} is not an RFC 3339 time; write it like 2026-03-05T08:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"{at!r} has no UTC offset; write it like 2026-03-05T08:00:00Z")
    return when.astimezone(UTC)


# --- records ---------------------------------------------------------------------


def _matches(entries: Iterable[str], material: str) -> bool:
    """Exact code or a prefix ending at a dot: "plastics" matches "plastics.pet_flake"."""
    return any(material == e or material.startswith(e + ".") for e in entries)


@dataclass(frozen=True, slots=True)
class Category:
    """One obligation within a scheme (e.g. portable batteries, rigid plastic packaging).

    ``target_bp`` is the first target in force; ``targets`` (when given) steps it by period:
    ``((first period, bp), ...)`` sorted, and :meth:`target_for` answers for one period.
    With ``element`` (material_recovery only), declared and certified masses are grams of
    that element.
    """

    code: str
    name: str
    target_bp: int
    basis: str
    declared: frozenset[str]
    processes: frozenset[str]
    outputs: frozenset[str]
    targets: tuple[tuple[str, int], ...] = ()
    element: str | None = None
    source: str = ""

    def eligible_output(self, material: str) -> bool:
        """Whether a certified lot of ``material`` may back this category."""
        return _matches(self.outputs, material)

    def eligible_process(self, process: str) -> bool:
        """Whether outputs of ``process`` may be certified under this category."""
        return process in self.processes

    def eligible_declared(self, material: str) -> bool:
        """Whether a producer declares ``material`` under this category."""
        return _matches(self.declared, material)

    def target_for(self, period: str) -> int:
        """The target in basis points for ``period`` (a period of the scheme's kind).

        0 before the first period the data gives a figure for: no obligation, never a guess.
        Without ``targets`` it is ``target_bp`` for every period.
        """
        if not self.targets:
            return self.target_bp
        bp = 0
        for first, value in self.targets:
            if first <= period:
                bp = value
        return bp

    def obligation_g(self, period: str, declared_g: int) -> int:
        """Grams to certify for ``declared_g`` placed on the market in ``period``."""
        return obligation_g(declared_g, self.target_for(period))


def obligation_g(declared_g: int, target_bp: int) -> int:
    """``declared_g`` x ``target_bp`` / 10000, rounded up (an obligation never understates).

    Example: 1,001 g at 4,500 bp = 450.45 g -> 451 g.
    """
    if isinstance(declared_g, bool) or not isinstance(declared_g, int) or declared_g < 0:
        raise ValueError(f"declared mass must be a whole number of grams >= 0, got {declared_g!r}")
    if isinstance(target_bp, bool) or not isinstance(target_bp, int):
        raise ValueError(f"target must be whole basis points, got {target_bp!r}")
    if not 0 <= target_bp <= _BP_PER_UNIT:
        raise ValueError(f"target must be 0..{_BP_PER_UNIT} basis points, got {target_bp}")
    return -((-declared_g * target_bp) // _BP_PER_UNIT)


@dataclass(frozen=True, slots=True)
class Scheme:
    """An EPR scheme: a jurisdiction's obligations, counted per period of one kind."""

    id: str
    name: str
    jurisdiction: str
    period: str
    source: str
    categories: Mapping[str, Category] = field(hash=False)

    @property
    def period_hint(self) -> str:
        """How a period of this scheme is written, for messages ("a calendar year like 2026")."""
        return PERIOD_KINDS[self.period].hint

    def period_ok(self, period: str) -> bool:
        """Whether ``period`` is written as a period of this scheme's kind."""
        return _parse_period(self.period, period) is not None

    def period_bounds(self, period: str) -> tuple[str, str]:
        """[start, end) of ``period`` as UTC times "YYYY-MM-01T00:00:00Z".

        They compare as strings with record ``at`` times written without a fraction of a
        second; for any ``at`` use :meth:`contains` (or ``period_of(at) == period``).
        """
        span = _parse_period(self.period, period)
        if span is None:
            raise ValueError(
                f"{self.id} counts by {self.period}: {period!r} is not {self.period_hint}"
            )
        year, month, months = span
        end = (month - 1) + months
        return _utc(year, month), _utc(year + end // 12, end % 12 + 1)

    def period_of(self, at: str) -> str:
        """The period of this scheme's kind that contains the RFC 3339 time ``at``."""
        when = _parse_at(at)
        name = PERIOD_KINDS[self.period].name(when.year, when.month)
        if _parse_period(self.period, name) is None:
            raise ValueError(f"{at!r} is outside the years {_MIN_YEAR}..{_MAX_YEAR} periods cover")
        return name

    def contains(self, period: str, at: str) -> bool:
        """Whether the RFC 3339 time ``at`` falls in ``period`` (compared as instants)."""
        if not self.period_ok(period):
            raise ValueError(
                f"{self.id} counts by {self.period}: {period!r} is not {self.period_hint}"
            )
        return self.period_of(at) == period


# --- parsing ---------------------------------------------------------------------


def _bad(where: str, message: str) -> ValueError:
    return ValueError(f"{_DATA_FILE}: {where}: {message}")


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, f"{key!r} must be a non-empty string")
    return value


def _codes(entry: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    value = entry.get(key)
    if not isinstance(value, list) or not value:
        raise _bad(where, f"{key!r} must be a non-empty list of codes")
    if not all(isinstance(v, str) and v for v in value):
        raise _bad(where, f"{key!r} must hold only non-empty strings")
    if len(set(value)) != len(value):
        raise _bad(where, f"{key!r} lists a code twice")
    return frozenset(value)


def _materials_for(entry: str, taxonomy: Taxonomy) -> list[str]:
    return [code for code in taxonomy.materials if _matches((entry,), code)]


def _targets(raw: object, kind: str, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, dict) or not raw:
        raise _bad(where, "'targets' must be a non-empty table of period = basis points")
    steps: list[tuple[str, int]] = []
    for period, bp in raw.items():
        if _parse_period(kind, period) is None:
            raise _bad(
                where,
                f"target period {period!r} is not {PERIOD_KINDS[kind].hint} "
                f"(the scheme counts by {kind})",
            )
        if type(bp) is not int or not 0 < bp <= _BP_PER_UNIT:
            raise _bad(
                where,
                f"target for {period} must be whole basis points 1..{_BP_PER_UNIT} "
                f"(4500 = 45 %), got {bp!r}",
            )
        steps.append((period, bp))
    return tuple(sorted(steps))


def _category(raw: object, kind: str, taxonomy: Taxonomy, where: str) -> Category:
    if not isinstance(raw, dict):
        raise _bad(where, "expected a table")
    code = _text(raw, "code", where)
    if not _CATEGORY_RE.fullmatch(code):
        raise _bad(where, f"category code {code!r} must be [a-z0-9_], at most 32 characters")
    where = f"{where} ({code!r})"
    missing = sorted(_CATEGORY_REQUIRED - set(raw))
    if missing:
        raise _bad(where, f"missing field(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - _CATEGORY_KEYS)
    if unknown:
        raise _bad(where, f"unknown field(s) {', '.join(unknown)}")
    basis = _text(raw, "basis", where)
    if basis not in BASES:
        raise _bad(where, f"basis {basis!r} is not one of {', '.join(sorted(BASES))}")
    targets = _targets(raw["targets"], kind, where)

    processes = _codes(raw, "processes", where)
    for proc in sorted(processes):
        if taxonomy.process(proc) is None:
            raise _bad(where, f"process {proc!r} is not in the material taxonomy")
    declared = _codes(raw, "declared", where)
    outputs = _codes(raw, "outputs", where)
    for key, entries in (("declared", declared), ("outputs", outputs)):
        for entry in sorted(entries):
            if not _materials_for(entry, taxonomy):
                raise _bad(
                    where,
                    f"{key} entry {entry!r} matches no material code or family prefix in "
                    "the material taxonomy",
                )
    # Every output must be a material one of the category's processes can make.
    families = {f for p in processes for f in taxonomy.processes[p].families}
    for entry in sorted(outputs):
        if entry.split(".", 1)[0] not in families:
            raise _bad(
                where,
                f"output {entry!r} is not of a family the processes "
                f"{', '.join(sorted(processes))} handle ({', '.join(sorted(families))})",
            )

    element: str | None = None
    if "element" in raw:
        element = _text(raw, "element", where)
        if not taxonomy.is_element(element):
            raise _bad(where, f"element {element!r} is not a tracked element of the taxonomy")
        if basis != "material_recovery":
            raise _bad(where, "'element' is only for basis 'material_recovery'")
        for entry in sorted(outputs):
            for mat_code in _materials_for(entry, taxonomy):
                mat = taxonomy.materials[mat_code]
                if mat.element != element and element not in mat.elements:
                    raise _bad(where, f"output {mat_code!r} carries no {element}")

    source = _text(raw, "source", where) if "source" in raw else ""
    return Category(
        code=code,
        name=_text(raw, "name", where),
        target_bp=targets[0][1],
        basis=basis,
        declared=declared,
        processes=processes,
        outputs=outputs,
        targets=targets,
        element=element,
        source=source,
    )


def _scheme(raw: object, index: int, taxonomy: Taxonomy) -> Scheme:
    where = f"schemes[{index}]"
    if not isinstance(raw, dict):
        raise _bad(where, "expected a table")
    sid = _text(raw, "id", where)
    where = f"scheme {sid!r}"
    if not _SCHEME_ID_RE.fullmatch(sid):
        raise _bad(where, "the id must be [a-z0-9._-], start with a letter or digit, ≤ 64 long")
    missing = sorted(_SCHEME_KEYS - set(raw))
    if missing:
        raise _bad(where, f"missing field(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - _SCHEME_KEYS)
    if unknown:
        raise _bad(where, f"unknown field(s) {', '.join(unknown)}")
    jurisdiction = _text(raw, "jurisdiction", where)
    if not _JURISDICTION_RE.fullmatch(jurisdiction):
        raise _bad(
            where, f"jurisdiction {jurisdiction!r} must be an ISO 3166 code like IN, EU or IN-MH"
        )
    kind = _text(raw, "period", where)
    if kind not in PERIOD_KINDS:
        raise _bad(where, f"period {kind!r} is not one of {', '.join(PERIOD_KINDS)}")
    raw_categories = raw["categories"]
    if not isinstance(raw_categories, list) or not raw_categories:
        raise _bad(where, "'categories' must be a non-empty array of tables")
    categories: dict[str, Category] = {}
    for j, raw_cat in enumerate(raw_categories):
        cat = _category(raw_cat, kind, taxonomy, f"{where} categories[{j}]")
        if cat.code in categories:
            raise _bad(where, f"category {cat.code!r} is listed twice")
        categories[cat.code] = cat
    return Scheme(
        id=sid,
        name=_text(raw, "name", where),
        jurisdiction=jurisdiction,
        period=kind,
        source=_text(raw, "source", where),
        categories=MappingProxyType(categories),
    )


def parse_schemes(doc: Mapping[str, Any], taxonomy: Taxonomy | None = None) -> dict[str, Scheme]:
    """Validate a parsed TOML document into schemes by id (file order).

    Raises ValueError naming the entry and what to fix on any problem.
    """
    tax = default_taxonomy() if taxonomy is None else taxonomy
    if set(doc) != {"schemes"}:
        raise _bad("top level", "the file holds exactly one [[schemes]] array")
    raw = doc["schemes"]
    if not isinstance(raw, list) or not raw:
        raise _bad("top level", "[[schemes]] must be a non-empty array of tables")
    schemes: dict[str, Scheme] = {}
    for i, entry in enumerate(raw):
        scheme = _scheme(entry, i, tax)
        if scheme.id in schemes:
            raise _bad(f"scheme {scheme.id!r}", "the id is used twice")
        schemes[scheme.id] = scheme
    return schemes


@functools.cache
def default_schemes() -> Mapping[str, Scheme]:
    """The packaged schemes by id, loaded and validated once."""
    text = files("ledger").joinpath("data", _DATA_FILE).read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{_DATA_FILE} is malformed TOML: {exc}") from exc
    return MappingProxyType(parse_schemes(doc))
