"""EPR schemes as data: the packaged figures, validation, periods and eligibility."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.epr_schemes import (
    PERIOD_KINDS,
    Category,
    Scheme,
    default_schemes,
    obligation_g,
    parse_schemes,
)
from ledger.materials import default_taxonomy

# --- the packaged file -------------------------------------------------------------


def test_packaged_schemes_load_with_their_figures() -> None:
    schemes = default_schemes()
    assert list(schemes) == [
        "eu.batteries.portable",
        "eu.batteries.ev",
        "in.batteries.ev",
        "eu.packaging",
        "in.packaging.plastic",
        "in.tyres",
    ]
    targets = {(s.id, c.code): c.targets for s in schemes.values() for c in s.categories.values()}
    # Reg. (EU) 2023/1542 Art. 59(4): 45 % / 63 % / 73 %.
    assert targets["eu.batteries.portable", "portable"] == (
        ("2023", 4500),
        ("2027", 6300),
        ("2030", 7300),
    )
    # Annex XII Part C: Co, Ni, Cu 90 % then 95 %; Li 50 % then 80 %.
    for el in ("co", "ni", "cu"):
        assert targets["eu.batteries.ev", el] == (("2028", 9000), ("2032", 9500))
    assert targets["eu.batteries.ev", "li"] == (("2028", 5000), ("2032", 8000))
    # India HOWM Rules Schedule IX: 35 %, 70 %, 100 %.
    assert targets["in.tyres", "tyres"] == (
        ("2022-23", 3500),
        ("2023-24", 7000),
        ("2024-25", 10000),
    )
    assert targets["in.packaging.plastic", "cat_i"][0] == ("2024-25", 5000)
    assert targets["eu.packaging", "paper"] == (("2025", 7500), ("2030", 8500))
    assert targets["in.batteries.ev", "recovery"] == (
        ("2024-25", 7000),
        ("2025-26", 8000),
        ("2026-27", 9000),
    )


def test_every_packaged_scheme_is_consistent_with_the_taxonomy() -> None:
    tax = default_taxonomy()
    for scheme in default_schemes().values():
        assert scheme.source
        assert scheme.period in PERIOD_KINDS
        for cat in scheme.categories.values():
            assert cat.target_bp == cat.targets[0][1]
            assert all(tax.process(p) is not None for p in cat.processes)
            assert all(scheme.period_ok(first) for first, _ in cat.targets)
            # At least one real material is certifiable and one declarable.
            assert any(cat.eligible_output(m) for m in tax.materials)
            assert any(cat.eligible_declared(m) for m in tax.materials)
    ev = default_schemes()["eu.batteries.ev"].categories
    assert ev["co"].element == "Co" and ev["co"].eligible_output("elements.cobalt_sulfate")
    assert not ev["co"].eligible_output("elements.nickel_sulfate")


def test_default_schemes_is_cached_and_read_only() -> None:
    assert default_schemes() is default_schemes()
    with pytest.raises(TypeError):
        default_schemes()["x"] = default_schemes()["in.tyres"]  # type: ignore[index]
    with pytest.raises(TypeError):
        default_schemes()["in.tyres"].categories["x"] = None  # type: ignore[index]


def test_targets_step_by_period_and_are_zero_before_the_first() -> None:
    """Portable batteries: 45 % from 2023, 63 % from 2027, 73 % from 2030; EV Li from 2028."""
    portable = default_schemes()["eu.batteries.portable"].categories["portable"]
    assert [
        portable.target_for(p) for p in ("2022", "2023", "2026", "2027", "2029", "2030", "2040")
    ] == [
        0,
        4500,
        4500,
        6300,
        6300,
        7300,
        7300,
    ]
    li = default_schemes()["eu.batteries.ev"].categories["li"]
    assert li.target_for("2027") == 0  # Annex XII Part C not yet due: no obligation, no guess
    assert li.target_for("2028") == 5000
    tyres = default_schemes()["in.tyres"].categories["tyres"]
    assert tyres.target_for("2021-22") == 0
    assert tyres.target_for("2023-24") == 7000
    assert tyres.target_for("2030-31") == 10000
    plain = Category("x", "X", 4500, "collection", frozenset(), frozenset(), frozenset())
    assert plain.target_for("1999") == 4500  # no steps: target_bp always


def test_obligation_is_rounded_up_and_integer() -> None:
    """1,001 g x 45 % = 450.45 g -> 451 g; 1,000 g x 45 % = 450 g exactly; 0 g -> 0 g."""
    assert obligation_g(1001, 4500) == 451
    assert obligation_g(1000, 4500) == 450
    assert obligation_g(0, 10000) == 0
    assert obligation_g(1, 1) == 1  # 0.0001 g -> 1 g: never understates
    assert obligation_g(7, 0) == 0
    tyres = default_schemes()["in.tyres"].categories["tyres"]
    assert tyres.obligation_g("2022-23", 1_000_003) == 350_002  # 350,001.05 -> 350,002
    for bad in ((-1, 4500), (1.5, 4500), (True, 4500), (10, 10001), (10, -1), (10, 45.0)):
        with pytest.raises(ValueError):
            obligation_g(*bad)


# --- eligibility -------------------------------------------------------------------


def _cat(outputs: set[str], processes: set[str] | None = None) -> Category:
    return Category(
        code="c",
        name="C",
        target_bp=5000,
        basis="recycling",
        declared=frozenset({"plastics"}),
        processes=frozenset(processes or {"pelletising"}),
        outputs=frozenset(outputs),
    )


def test_output_matching_is_on_whole_dotted_segments() -> None:
    fam = _cat({"plastics"})
    assert fam.eligible_output("plastics")
    assert fam.eligible_output("plastics.pet_flake")
    assert not fam.eligible_output("plastics_x.pet")
    assert not fam.eligible_output("paper.occ")
    assert not _cat({"plastic"}).eligible_output("plastics.pet_flake")
    sub = _cat({"batteries.li_ion"})
    assert sub.eligible_output("batteries.li_ion.nmc")
    assert sub.eligible_output("batteries.li_ion")
    assert not sub.eligible_output("batteries.li_ion_x")
    assert not sub.eligible_output("batteries")  # a prefix never matches its parent
    exact = _cat({"plastics.pet"})
    assert exact.eligible_output("plastics.pet")
    assert not exact.eligible_output("plastics.pet_flake")  # "pet" is not "pet_flake"
    assert fam.eligible_declared("plastics.pp") and not fam.eligible_declared("plastic")


def test_process_matching_is_exact() -> None:
    cat = _cat({"plastics"}, {"pelletising", "extrusion"})
    assert cat.eligible_process("pelletising")
    assert not cat.eligible_process("pelletis")
    assert not cat.eligible_process("washing_flaking")


# --- periods -----------------------------------------------------------------------


def _scheme(kind: str) -> Scheme:
    return Scheme("t", "T", "EU", kind, "test", {})


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("year", ["2026", "1900", "9998"], ["26", "2026-Q1", "20266", "1899", "9999", "２０２６"]),
        ("half", ["2026-H1", "2026-H2"], ["2026-H0", "2026-H3", "2026", "2026-h1"]),
        ("quarter", ["2026-Q1", "2026-Q4"], ["2026-Q0", "2026-Q5", "2026-H1", "2026-q1"]),
        ("year_april", ["2025-26", "2099-00"], ["2025-27", "2025-2026", "2025", "2025-25"]),
    ],
)
def test_period_ok_accepts_only_its_own_kind(kind: str, good: list[str], bad: list[str]) -> None:
    scheme = _scheme(kind)
    for period in good:
        assert scheme.period_ok(period), period
    for period in [*bad, "", " 2026", "2026\n", "2026-Q1\n"]:
        assert not scheme.period_ok(period), period
        with pytest.raises(ValueError, match=scheme.period_hint.split(" like")[0]):
            scheme.period_bounds(period)
    assert not scheme.period_ok(2026)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "period", "bounds"),
    [
        ("year", "2026", ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")),
        ("year", "9998", ("9998-01-01T00:00:00Z", "9999-01-01T00:00:00Z")),
        ("half", "2026-H1", ("2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z")),
        ("half", "2026-H2", ("2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z")),
        ("quarter", "2024-Q1", ("2024-01-01T00:00:00Z", "2024-04-01T00:00:00Z")),
        ("quarter", "2026-Q3", ("2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z")),
        ("quarter", "2026-Q4", ("2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z")),
        ("year_april", "2025-26", ("2025-04-01T00:00:00Z", "2026-04-01T00:00:00Z")),
        ("year_april", "2099-00", ("2099-04-01T00:00:00Z", "2100-04-01T00:00:00Z")),
    ],
)
def test_period_bounds(kind: str, period: str, bounds: tuple[str, str]) -> None:
    assert _scheme(kind).period_bounds(period) == bounds


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # at: year, half, quarter, year_april
        ("2026-03-05T08:00:00Z", ("2026", "2026-H1", "2026-Q1", "2025-26")),
        ("2026-01-01T00:00:00Z", ("2026", "2026-H1", "2026-Q1", "2025-26")),
        ("2026-12-31T23:59:59Z", ("2026", "2026-H2", "2026-Q4", "2026-27")),
        ("2026-12-31T23:59:59.999999Z", ("2026", "2026-H2", "2026-Q4", "2026-27")),
        ("2027-01-01T00:00:00Z", ("2027", "2027-H1", "2027-Q1", "2026-27")),
        ("2026-06-30T23:59:59Z", ("2026", "2026-H1", "2026-Q2", "2026-27")),
        ("2026-07-01T00:00:00Z", ("2026", "2026-H2", "2026-Q3", "2026-27")),
        # Leap day, and India's year turning on 1 April of a leap year.
        ("2024-02-29T12:00:00Z", ("2024", "2024-H1", "2024-Q1", "2023-24")),
        ("2024-03-31T23:59:59.5Z", ("2024", "2024-H1", "2024-Q1", "2023-24")),
        ("2024-04-01T00:00:00Z", ("2024", "2024-H1", "2024-Q2", "2024-25")),
        ("2100-03-01T00:00:00Z", ("2100", "2100-H1", "2100-Q1", "2099-00")),
        # An offset is converted to UTC first: this is 2025-12-31T23:30Z.
        ("2026-01-01T00:30:00+01:00", ("2025", "2025-H2", "2025-Q4", "2025-26")),
    ],
)
def test_period_of(at: str, expected: tuple[str, str, str, str]) -> None:
    got = tuple(_scheme(k).period_of(at) for k in ("year", "half", "quarter", "year_april"))
    assert got == expected


def test_period_of_refuses_a_time_that_is_not_rfc3339_utc() -> None:
    scheme = _scheme("year")
    for at in ("2026-03-05", "2026-03-05T08:00:00", "yesterday", ""):
        with pytest.raises(ValueError, match="2026-03-05T08:00:00Z"):
            scheme.period_of(at)


def test_contains_compares_instants_not_strings() -> None:
    """Half a second into 2027 sorts before "2027-01-01T00:00:00Z" as text ('.' < 'Z'),
    but is in 2027, not 2026."""
    scheme = _scheme("year")
    at = "2027-01-01T00:00:00.5Z"
    assert at < scheme.period_bounds("2026")[1]  # the string pitfall contains() avoids
    assert scheme.contains("2027", at)
    assert not scheme.contains("2026", at)
    with pytest.raises(ValueError, match="calendar year"):
        scheme.contains("2026-Q1", at)


_INSTANTS = st.datetimes(
    min_value=datetime(1900, 4, 1), max_value=datetime(9998, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(tzinfo=UTC))


@given(when=_INSTANTS, kind=st.sampled_from(sorted(PERIOD_KINDS)))
def test_every_instant_lies_in_the_bounds_of_its_period(when: datetime, kind: str) -> None:
    scheme = _scheme(kind)
    at = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    period = scheme.period_of(at)
    assert scheme.period_ok(period)
    start, end = (
        datetime.fromisoformat(b.replace("Z", "+00:00")) for b in scheme.period_bounds(period)
    )
    assert start <= when < end
    # The periods tile time: the period just before `start` ends exactly at `start`.
    if start > datetime(1900, 4, 2, tzinfo=UTC):
        before = scheme.period_of((start - timedelta(microseconds=1)).isoformat())
        assert before < period
        assert scheme.period_bounds(before)[1] == scheme.period_bounds(period)[0]


# --- validation --------------------------------------------------------------------


def _doc() -> dict[str, Any]:
    return {
        "schemes": [
            {
                "id": "xx.test",
                "name": "Test",
                "jurisdiction": "IN",
                "period": "year",
                "source": "a test",
                "categories": [
                    {
                        "code": "pet",
                        "name": "PET",
                        "basis": "recycling",
                        "targets": {"2026": 5000},
                        "declared": ["plastics"],
                        "processes": ["pelletising"],
                        "outputs": ["plastics.rpet_pellet"],
                    }
                ],
            }
        ]
    }


def _cat0(doc: dict[str, Any]) -> dict[str, Any]:
    category: dict[str, Any] = doc["schemes"][0]["categories"][0]
    return category


def test_the_minimal_document_parses() -> None:
    schemes = parse_schemes(_doc())
    cat = schemes["xx.test"].categories["pet"]
    assert (cat.target_bp, cat.targets, cat.element, cat.source) == (
        5000,
        (("2026", 5000),),
        None,
        "",
    )


def test_the_packaged_file_parses_through_parse_schemes() -> None:
    text = files("ledger").joinpath("data", "epr_schemes.toml").read_text(encoding="utf-8")
    assert list(parse_schemes(tomllib.loads(text))) == list(default_schemes())


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_doc())
    target: dict[str, Any] = doc["schemes"][0] if path.startswith("s.") else _cat0(doc)
    key = path[2:]
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("s.id", "EU.Batteries", r"scheme 'EU.Batteries': the id must be \[a-z0-9._-\]"),
        ("s.id", "", r"schemes\[0\]: 'id' must be a non-empty string"),
        ("s.source", _DELETE, r"scheme 'xx.test': missing field\(s\) source"),
        ("s.extra", 1, r"scheme 'xx.test': unknown field\(s\) extra"),
        ("s.jurisdiction", "India", "jurisdiction 'India' must be an ISO 3166 code"),
        ("s.period", "month", "period 'month' is not one of year, half, quarter, year_april"),
        ("s.categories", [], "'categories' must be a non-empty array"),
        ("c.code", "PET!", r"category code 'PET!' must be \[a-z0-9_\]"),
        (
            "c.basis",
            "reuse",
            "basis 'reuse' is not one of collection, material_recovery, recycling",
        ),
        ("c.targets", {}, "'targets' must be a non-empty table"),
        ("c.targets", {"2026-Q1": 5000}, "target period '2026-Q1' is not a calendar year"),
        ("c.targets", {"2026": 0}, "target for 2026 must be whole basis points 1..10000"),
        ("c.targets", {"2026": 10001}, "target for 2026 must be whole basis points"),
        ("c.targets", {"2026": 45.0}, "target for 2026 must be whole basis points"),
        ("c.targets", {"2026": True}, "target for 2026 must be whole basis points"),
        ("c.processes", ["incineration"], "process 'incineration' is not in the material taxonomy"),
        ("c.processes", [], "'processes' must be a non-empty list"),
        ("c.declared", ["plastic"], "declared entry 'plastic' matches no material code or family"),
        ("c.outputs", ["plastics.rpet_pelle"], "outputs entry 'plastics.rpet_pelle' matches no"),
        (
            "c.outputs",
            ["plastics.rpet_pellet", "plastics.rpet_pellet"],
            "'outputs' lists a code twice",
        ),
        ("c.outputs", ["paper.pulp_recycled"], "output 'paper.pulp_recycled' is not of a family"),
        ("c.declared", "plastics", "'declared' must be a non-empty list"),
        ("c.element", "Xx", "element 'Xx' is not a tracked element"),
        ("c.element", "Co", "'element' is only for basis 'material_recovery'"),
        ("c.outputs", _DELETE, r"missing field\(s\) outputs"),
        ("c.colour", "red", r"unknown field\(s\) colour"),
        ("c.source", "", "'source' must be a non-empty string"),
    ],
)
def test_each_problem_is_refused_naming_the_entry(path: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_schemes(_set(path, value))
    assert str(info.value).startswith("epr_schemes.toml: ")
    if path.startswith("c.") and path != "c.code":
        assert "scheme 'xx.test' categories[0] ('pet')" in str(info.value)


def test_element_outputs_must_carry_the_element() -> None:
    doc = _doc()
    _cat0(doc).update(
        basis="material_recovery",
        element="Co",
        processes=["hydrometallurgy"],
        outputs=["elements.cobalt_sulfate", "elements.copper"],
    )
    with pytest.raises(ValueError, match=r"output 'elements\.copper' carries no Co"):
        parse_schemes(doc)
    _cat0(doc)["outputs"] = ["elements.cobalt_sulfate"]
    assert parse_schemes(doc)["xx.test"].categories["pet"].element == "Co"


def test_duplicates_and_top_level_shape_are_refused() -> None:
    doc = _doc()
    doc["schemes"].append(copy.deepcopy(doc["schemes"][0]))
    with pytest.raises(ValueError, match=r"scheme 'xx\.test': the id is used twice"):
        parse_schemes(doc)
    doc = _doc()
    doc["schemes"][0]["categories"].append(copy.deepcopy(_cat0(doc)))
    with pytest.raises(ValueError, match="category 'pet' is listed twice"):
        parse_schemes(doc)
    with pytest.raises(ValueError, match=r"exactly one \[\[schemes\]\] array"):
        parse_schemes({**_doc(), "other": 1})
    with pytest.raises(ValueError, match="non-empty array"):
        parse_schemes({"schemes": []})
    with pytest.raises(ValueError, match=r"schemes\[0\]: expected a table"):
        parse_schemes({"schemes": ["x"]})


def test_periods_of_other_kinds_in_targets_are_checked_against_the_scheme() -> None:
    doc = _set("s.period", "year_april")
    with pytest.raises(ValueError, match="'2026' is not an April-to-March year like 2025-26"):
        parse_schemes(doc)
    _cat0(doc)["targets"] = {"2026-27": 5000, "2025-26": 4000}
    cat = parse_schemes(doc)["xx.test"].categories["pet"]
    assert cat.targets == (("2025-26", 4000), ("2026-27", 5000))  # sorted by period
    assert cat.target_bp == 4000
