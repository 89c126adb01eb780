"""Tests for the material taxonomy (ledger/materials.py, ledger/data/materials.toml)."""

from __future__ import annotations

import re
from collections import Counter
from importlib.resources import files

import pytest

from ledger.materials import Material, Taxonomy, default_taxonomy

LOW_RE = re.compile(r"^\d{2} \d{2} \d{2}\*?$")
HS_RE = re.compile(r"^\d{4}(\.\d{2})?$")
WASTE_FAMILIES = ("steel", "nonferrous", "paper", "plastics", "tyres", "batteries")

# IUPAC standard atomic weights (abridged / conventional values).
ATOMIC_WEIGHT = {
    "H": 1.008,
    "Li": 6.94,
    "C": 12.011,
    "O": 15.999,
    "S": 32.06,
    "Mn": 54.938,
    "Co": 58.933,
    "Ni": 58.693,
}
WATER = {"H": 2, "O": 1}


def _formula(*parts: tuple[dict[str, int], int]) -> dict[str, int]:
    atoms: Counter[str] = Counter()
    for group, count in parts:
        for symbol, n in group.items():
            atoms[symbol] += n * count
    return dict(atoms)


def _g_per_t(formula: dict[str, int], element: str) -> float:
    mass = sum(ATOMIC_WEIGHT[s] * n for s, n in formula.items())
    return ATOMIC_WEIGHT[element] * formula[element] / mass * 1_000_000


STOICHIOMETRY = {
    "elements.cobalt_sulfate": ("Co", _formula(({"Co": 1, "S": 1, "O": 4}, 1), (WATER, 7))),
    "elements.nickel_sulfate": ("Ni", _formula(({"Ni": 1, "S": 1, "O": 4}, 1), (WATER, 6))),
    "elements.lithium_carbonate": ("Li", {"Li": 2, "C": 1, "O": 3}),
    "elements.lithium_hydroxide": ("Li", _formula(({"Li": 1, "O": 1, "H": 1}, 1), (WATER, 1))),
    "elements.manganese_sulfate": ("Mn", _formula(({"Mn": 1, "S": 1, "O": 4}, 1), (WATER, 1))),
}
METALS = {
    "elements.copper": "Cu",
    "elements.aluminium": "Al",
    "elements.lead": "Pb",
    "elements.cobalt": "Co",
    "elements.nickel": "Ni",
}

MINIMAL = """
[[families]]
code = "steel"
name = "Iron and steel"

[[elements]]
symbol = "Fe"
name = "Iron"
"""


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return Taxonomy.load()


def _materials(tax: Taxonomy) -> list[Material]:
    return list(tax.materials.values())


def test_packaged_file_loads(tax: Taxonomy) -> None:
    assert files("ledger").joinpath("data", "materials.toml").is_file()
    assert set(tax.families) == {*WASTE_FAMILIES, "elements"}
    assert {"Co", "Li", "Ni", "Mn", "Cu", "Al", "Pb", "Fe", "Zn", "C"} <= set(tax.elements)
    assert default_taxonomy() is default_taxonomy()
    assert default_taxonomy().materials.keys() == tax.materials.keys()


def test_lookups(tax: Taxonomy) -> None:
    hms1 = tax.material("steel.hms1")
    assert hms1 is not None
    assert (hms1.family, hms1.kind, hms1.hs) == ("steel", "waste", "7204.49")
    assert tax.material("steel.nope") is None
    melting = tax.process("melting")
    assert melting is not None and melting.recycling and melting.families == ("steel",)
    assert tax.process("nope") is None
    assert tax.is_element("Co") and not tax.is_element("Xx")
    nmc = tax.material("batteries.li_ion.nmc")
    assert nmc is not None and nmc.elements["Co"][0] <= nmc.elements["Co"][1]


def test_read_only(tax: Taxonomy) -> None:
    with pytest.raises(TypeError):
        tax.materials["x"] = tax.materials["steel.hms1"]  # type: ignore[index]
    mat = tax.materials["steel.hms1"]
    with pytest.raises(AttributeError):
        mat.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("family", WASTE_FAMILIES)
def test_families_have_six_materials(tax: Taxonomy, family: str) -> None:
    assert sum(m.family == family for m in _materials(tax)) >= 6


def test_elements_family_has_five_materials(tax: Taxonomy) -> None:
    members = [m for m in _materials(tax) if m.family == "elements"]
    assert len(members) >= 5
    for m in members:
        assert m.element is not None and tax.is_element(m.element)
        assert m.element_g_per_t is not None


def test_every_kind_used_and_family_prefix(tax: Taxonomy) -> None:
    assert {m.kind for m in _materials(tax)} == {"waste", "virgin", "product"}
    for m in _materials(tax):
        assert m.code.split(".", 1)[0] == m.family


def test_code_formats(tax: Taxonomy) -> None:
    for m in _materials(tax):
        if m.low is not None:
            assert LOW_RE.match(m.low), m.code
        if m.hs is not None:
            assert HS_RE.match(m.hs), m.code


def test_hazardous_battery_asterisks(tax: Taxonomy) -> None:
    lows = {m.low for m in _materials(tax) if m.low and m.low.startswith("16 06")}
    assert {"16 06 01*", "16 06 02*", "16 06 03*", "16 06 04", "16 06 05"} <= lows
    for low in lows:
        entry = low.rstrip("*")
        if entry in {"16 06 01", "16 06 02", "16 06 03", "16 06 06"}:
            assert low.endswith("*"), low
        if entry in {"16 06 04", "16 06 05"}:
            assert not low.endswith("*"), low
    lead = tax.material("batteries.lead_acid")
    assert lead is not None and lead.low == "16 06 01*"
    mixed = tax.material("batteries.portable_mixed")
    assert mixed is not None and mixed.low == "20 01 33*"


def test_element_ranges_and_yields(tax: Taxonomy) -> None:
    for m in _materials(tax):
        for symbol, (lo, hi) in m.elements.items():
            assert tax.is_element(symbol)
            assert 0 <= lo <= hi <= 1_000_000, (m.code, symbol)
    for p in tax.processes.values():
        assert set(p.families) <= set(tax.families)
        if p.yield_permille is not None:
            lo, hi = p.yield_permille
            assert 0 <= lo <= hi <= 1000, p.code


@pytest.mark.parametrize("code", sorted(STOICHIOMETRY))
def test_salt_stoichiometry(tax: Taxonomy, code: str) -> None:
    element, formula = STOICHIOMETRY[code]
    m = tax.material(code)
    assert m is not None and m.element == element and m.element_g_per_t is not None
    assert m.element_g_per_t == pytest.approx(_g_per_t(formula, element), rel=0.01)


@pytest.mark.parametrize("code", sorted(METALS))
def test_metal_purity(tax: Taxonomy, code: str) -> None:
    m = tax.material(code)
    assert m is not None and m.element == METALS[code] and m.element_g_per_t is not None
    assert m.element_g_per_t == pytest.approx(1_000_000, rel=0.01)


def test_processes_present(tax: Taxonomy) -> None:
    expected = {
        "sorting", "baling", "shredding", "shearing", "melting", "smelting", "refining",
        "pulping", "papermaking", "washing_flaking", "pelletising", "extrusion",
        "granulating", "crumbing", "pyrolysis", "retreading", "dismantling", "discharging",
        "mechanical", "hydrometallurgy", "pyrometallurgy", "cathode_synthesis",
        "cell_manufacture", "pack_assembly", "manufacturing",
    }  # fmt: skip
    assert expected <= set(tax.processes)
    assert not tax.processes["sorting"].recycling
    assert tax.processes["hydrometallurgy"].recycling


def test_minimal_text_loads() -> None:
    text = MINIMAL + '[[materials]]\ncode = "steel.hms1"\nname = "HMS 1"\nkind = "waste"\n'
    tax = Taxonomy.load(text)
    assert list(tax.materials) == ["steel.hms1"]
    assert tax.materials["steel.hms1"].elements == {}


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        pytest.param(
            '[[materials]]\ncode = "glass.cullet"\nname = "Cullet"\nkind = "waste"\n',
            ["glass.cullet", "glass"],
            id="bad-family",
        ),
        pytest.param(
            '[[materials]]\ncode = "steel.x"\nname = "X"\nkind = "scrap"\n',
            ["steel.x", "scrap"],
            id="unknown-kind",
        ),
        pytest.param(
            '[[materials]]\ncode = "steel.hms1"\nname = "HMS 1"\nkind = "waste"\n'
            "elements = { Xx = [1, 2] }\n",
            ["steel.hms1", "Xx"],
            id="unknown-element",
        ),
        pytest.param(
            '[[materials]]\ncode = "steel.hms1"\nname = "HMS 1"\nkind = "waste"\n'
            "elements = { Fe = [990000, 940000] }\n",
            ["steel.hms1", "Fe"],
            id="min-greater-than-max",
        ),
        pytest.param(
            '[[materials]]\ncode = "steel.hms1"\nname = "HMS 1"\nkind = "waste"\n'
            '[[materials]]\ncode = "steel.hms1"\nname = "HMS 1 again"\nkind = "waste"\n',
            ["steel.hms1", "duplicate"],
            id="duplicate-material",
        ),
        pytest.param(
            '[[families]]\ncode = "steel"\nname = "Steel again"\n',
            ["steel", "duplicate"],
            id="duplicate-family",
        ),
        pytest.param(
            '[[processes]]\ncode = "melting"\nname = "Melting"\nfamilies = ["steel"]\n'
            "yield_permille = [800, 1200]\nrecycling = true\n",
            ["melting"],
            id="yield-out-of-range",
        ),
        pytest.param(
            '[[processes]]\ncode = "melting"\nname = "Melting"\nfamilies = ["steel"]\n'
            "recycling = true\n"
            '[[processes]]\ncode = "melting"\nname = "Melting"\nfamilies = ["steel"]\n'
            "recycling = true\n",
            ["melting", "duplicate"],
            id="duplicate-process",
        ),
        pytest.param(
            '[[processes]]\ncode = "melting"\nname = "Melting"\nfamilies = ["glass"]\n'
            "recycling = true\n",
            ["melting", "glass"],
            id="process-bad-family",
        ),
        pytest.param(
            '[[materials]]\ncode = "steel.hms1"\nname = "HMS 1"\nkind = "waste"\nlow = "170405"\n',
            ["steel.hms1", "170405"],
            id="malformed-low",
        ),
    ],
)
def test_invalid_data_names_entry(extra: str, names: list[str]) -> None:
    with pytest.raises(ValueError) as excinfo:
        Taxonomy.load(MINIMAL + extra)
    message = str(excinfo.value)
    for name in names:
        assert name in message


def test_malformed_toml_is_value_error() -> None:
    with pytest.raises(ValueError, match="malformed"):
        Taxonomy.load("[[materials]\n")
