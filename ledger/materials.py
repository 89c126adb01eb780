"""Material taxonomy: families, tracked elements, materials and processes.

The data lives in the packaged file ``ledger/data/materials.toml``; this module parses
and validates it into immutable records.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, cast

__all__ = [
    "KINDS",
    "Element",
    "Family",
    "Kind",
    "Material",
    "Process",
    "Taxonomy",
    "default_taxonomy",
]

Kind: TypeAlias = Literal["waste", "virgin", "product"]
KINDS: Final[frozenset[str]] = frozenset({"waste", "virgin", "product"})

_G_PER_T_MAX: Final = 1_000_000
_PERMILLE_MAX: Final = 1000
_LOW_RE: Final = re.compile(r"^\d{2} \d{2} \d{2}\*?$")
_HS_RE: Final = re.compile(r"^\d{4}(\.\d{2})?$")

_TOP_KEYS: Final = frozenset({"families", "elements", "materials", "processes"})
_FAMILY_KEYS: Final = frozenset({"code", "name"})
_ELEMENT_KEYS: Final = frozenset({"symbol", "name"})
_MATERIAL_KEYS: Final = frozenset(
    {"code", "name", "family", "kind", "low", "hs", "elements", "element", "element_g_per_t"}
)
_PROCESS_KEYS: Final = frozenset({"code", "name", "families", "yield_permille", "recycling"})


@dataclass(frozen=True, slots=True)
class Family:
    """A material family, e.g. ``steel``."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Element:
    """A chemical element whose recovered content is tracked."""

    symbol: str
    name: str


@dataclass(frozen=True, slots=True)
class Material:
    """A material grade; ``elements`` maps symbol to (min, max) grams per tonne."""

    code: str
    name: str
    family: str
    kind: Kind
    low: str | None = None
    hs: str | None = None
    elements: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    element: str | None = None
    element_g_per_t: int | None = None


@dataclass(frozen=True, slots=True)
class Process:
    """A process; ``yield_permille`` is (min, max) output mass / input mass."""

    code: str
    name: str
    families: tuple[str, ...]
    yield_permille: tuple[int, int] | None
    recycling: bool


# --- parsing helpers -------------------------------------------------------------


def _table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a table")
    return cast(Mapping[str, object], value)


def _tables(data: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected an array of tables")
    return [_table(item, f"{key}[{i}]") for i, item in enumerate(value)]


def _check_keys(entry: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _req_str(entry: Mapping[str, object], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value


def _opt_str(entry: Mapping[str, object], key: str, where: str) -> str | None:
    if key not in entry:
        return None
    return _req_str(entry, key, where)


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value


def _range(value: object, lo: int, hi: int, where: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{where}: expected [min, max]")
    low, high = _int(value[0], where), _int(value[1], where)
    if low > high:
        raise ValueError(f"{where}: min {low} > max {high}")
    if low < lo or high > hi:
        raise ValueError(f"{where}: [{low}, {high}] outside {lo}..{hi}")
    return low, high


def _code(
    entry: Mapping[str, object], key: str, where: str, seen: Container[str], what: str
) -> str:
    code = _req_str(entry, key, where)
    if code in seen:
        raise ValueError(f"duplicate {what} {code!r}")
    return code


def _material(
    entry: Mapping[str, object],
    index: int,
    seen: Container[str],
    families: Mapping[str, Family],
    elements: Mapping[str, Element],
) -> Material:
    code = _code(entry, "code", f"materials[{index}]", seen, "material code")
    where = f"material {code!r}"
    _check_keys(entry, _MATERIAL_KEYS, where)
    family = code.split(".", 1)[0]
    if "." not in code or family not in families:
        raise ValueError(f"{where}: family prefix {family!r} is not a family")
    declared = _opt_str(entry, "family", where)
    if declared is not None and declared != family:
        raise ValueError(f"{where}: family {declared!r} does not match code prefix {family!r}")
    kind = _req_str(entry, "kind", where)
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}")
    low = _opt_str(entry, "low", where)
    if low is not None and not _LOW_RE.match(low):
        raise ValueError(f"{where}: malformed List of Waste code {low!r}")
    hs = _opt_str(entry, "hs", where)
    if hs is not None and not _HS_RE.match(hs):
        raise ValueError(f"{where}: malformed HS code {hs!r}")

    contents: dict[str, tuple[int, int]] = {}
    for symbol, rng in _table(entry.get("elements", {}), f"{where} elements").items():
        if symbol not in elements:
            raise ValueError(f"{where}: unknown element {symbol!r}")
        contents[symbol] = _range(rng, 0, _G_PER_T_MAX, f"{where} element {symbol}")

    element = _opt_str(entry, "element", where)
    g_per_t: int | None = None
    if "element_g_per_t" in entry:
        g_per_t = _int(entry["element_g_per_t"], f"{where} element_g_per_t")
        if not 0 < g_per_t <= _G_PER_T_MAX:
            raise ValueError(f"{where}: element_g_per_t {g_per_t} outside 1..{_G_PER_T_MAX}")
    if element is not None and element not in elements:
        raise ValueError(f"{where}: unknown element {element!r}")
    if (element is None) != (g_per_t is None):
        raise ValueError(f"{where}: 'element' and 'element_g_per_t' go together")
    if family == "elements" and element is None:
        raise ValueError(f"{where}: an elements-family material must name its element")

    return Material(
        code=code,
        name=_req_str(entry, "name", where),
        family=family,
        kind=cast(Kind, kind),
        low=low,
        hs=hs,
        elements=MappingProxyType(contents),
        element=element,
        element_g_per_t=g_per_t,
    )


def _process(
    entry: Mapping[str, object], index: int, seen: Container[str], families: Mapping[str, Family]
) -> Process:
    code = _code(entry, "code", f"processes[{index}]", seen, "process code")
    where = f"process {code!r}"
    _check_keys(entry, _PROCESS_KEYS, where)
    fams = entry.get("families")
    if not isinstance(fams, list) or not fams:
        raise ValueError(f"{where}: 'families' must be a non-empty list")
    for fam in fams:
        if fam not in families:
            raise ValueError(f"{where}: {fam!r} is not a family")
    yields = None
    if "yield_permille" in entry:
        yields = _range(entry["yield_permille"], 0, _PERMILLE_MAX, f"{where} yield_permille")
    recycling = entry.get("recycling")
    if not isinstance(recycling, bool):
        raise ValueError(f"{where}: 'recycling' must be true or false")
    return Process(
        code=code,
        name=_req_str(entry, "name", where),
        families=tuple(cast(list[str], fams)),
        yield_permille=yields,
        recycling=recycling,
    )


# --- taxonomy --------------------------------------------------------------------


class Taxonomy:
    """Validated, read-only view of the material taxonomy."""

    __slots__ = ("_elements", "_families", "_materials", "_processes")

    def __init__(
        self,
        families: Mapping[str, Family],
        elements: Mapping[str, Element],
        materials: Mapping[str, Material],
        processes: Mapping[str, Process],
    ) -> None:
        self._families = MappingProxyType(dict(families))
        self._elements = MappingProxyType(dict(elements))
        self._materials = MappingProxyType(dict(materials))
        self._processes = MappingProxyType(dict(processes))

    @classmethod
    def load(cls, text: str | None = None) -> Taxonomy:
        """Parse and validate TOML ``text`` (the packaged file when None)."""
        if text is None:
            text = (files("ledger") / "data" / "materials.toml").read_text(encoding="utf-8")
        try:
            data: Mapping[str, object] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"materials TOML is malformed: {exc}") from exc
        _check_keys(data, _TOP_KEYS, "taxonomy")

        families: dict[str, Family] = {}
        for i, entry in enumerate(_tables(data, "families")):
            code = _code(entry, "code", f"families[{i}]", families, "family code")
            _check_keys(entry, _FAMILY_KEYS, f"family {code!r}")
            families[code] = Family(code, _req_str(entry, "name", f"family {code!r}"))

        elements: dict[str, Element] = {}
        for i, entry in enumerate(_tables(data, "elements")):
            sym = _code(entry, "symbol", f"elements[{i}]", elements, "element symbol")
            _check_keys(entry, _ELEMENT_KEYS, f"element {sym!r}")
            elements[sym] = Element(sym, _req_str(entry, "name", f"element {sym!r}"))

        materials: dict[str, Material] = {}
        for i, entry in enumerate(_tables(data, "materials")):
            mat = _material(entry, i, materials, families, elements)
            materials[mat.code] = mat

        processes: dict[str, Process] = {}
        for i, entry in enumerate(_tables(data, "processes")):
            proc = _process(entry, i, processes, families)
            processes[proc.code] = proc

        return cls(families, elements, materials, processes)

    @property
    def families(self) -> Mapping[str, Family]:
        """Families by code."""
        return self._families

    @property
    def elements(self) -> Mapping[str, Element]:
        """Tracked elements by symbol."""
        return self._elements

    @property
    def materials(self) -> Mapping[str, Material]:
        """Materials by code, in file order."""
        return self._materials

    @property
    def processes(self) -> Mapping[str, Process]:
        """Processes by code, in file order."""
        return self._processes

    def material(self, code: str) -> Material | None:
        """The material with this code, or None."""
        return self._materials.get(code)

    def process(self, code: str) -> Process | None:
        """The process with this code, or None."""
        return self._processes.get(code)

    def is_element(self, symbol: str) -> bool:
        """Whether ``symbol`` is a tracked element."""
        return symbol in self._elements


@functools.cache
def default_taxonomy() -> Taxonomy:
    """The packaged taxonomy, loaded once."""
    return Taxonomy.load()
