"""Reg. (EU) 2023/1542 Art. 8 minimum recycled-content shares, checked exactly (no floats)."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest

from ledger.recycled_content import (
    RecycledContentError,
    check_recycled_content,
    default_tiers,
    parse_tiers,
    tier_in_force,
)

KG = 1000


def test_packaged_tiers_are_the_article_8_figures() -> None:
    tiers = default_tiers()
    assert [t.start for t in tiers] == [date(2031, 8, 18), date(2036, 8, 18)]
    got = [{x.element: (x.min_bp, x.basis) for x in t.targets} for t in tiers]
    assert got[0] == {
        "Co": (1600, "active_material"),
        "Li": (600, "active_material"),
        "Ni": (600, "active_material"),
        "Pb": (8500, "battery"),
    }
    assert got[1] == {
        "Co": (2600, "active_material"),
        "Li": (1200, "active_material"),
        "Ni": (1500, "active_material"),
        "Pb": (8500, "battery"),
    }


def test_cathode_lot_cobalt_meets_2031_but_not_2036() -> None:
    """A cathode lot of 1,000 kg holds 200 kg Co, of which 40 kg recovered.

    share = 40 / 200 = 1/5 = 20 %.
    On 2031-08-18 the Co minimum is 16 %: 20 % >= 16 %  -> meets.
    On 2036-08-18 the Co minimum is 26 %: 20 % <  26 %  -> fails.
    """
    grams = {"Co": (200 * KG * KG, 40 * KG * KG)}
    (f2031,) = check_recycled_content(date(2031, 8, 18), grams)
    assert (f2031.share, f2031.required, f2031.meets) == (Fraction(1, 5), Fraction(4, 25), True)
    assert f2031.share_bp_floor == 2000
    (f2036,) = check_recycled_content(date(2036, 8, 18), grams)
    assert (f2036.required, f2036.meets) == (Fraction(13, 50), False)


def test_exactly_on_the_target_meets_and_one_gram_short_fails() -> None:
    """Li: 6 % of 1,000,000 g is 60,000 g. 60,000 meets; 59,999 (5.9999 %) does not.

    A float comparison of 0.06 could round either way; the Fraction comparison cannot.
    """
    on = date(2032, 1, 1)
    (ok,) = check_recycled_content(on, {"Li": (1_000_000, 60_000)})
    (short,) = check_recycled_content(on, {"Li": (1_000_000, 59_999)})
    assert ok.meets and not short.meets
    assert short.share_bp_floor == 599  # rounded down, never up


def test_lead_is_a_share_of_the_whole_battery_and_stays_85_percent() -> None:
    """An SLI battery with 10 kg Pb, 8.5 kg recovered: 85 % meets both tiers."""
    for on in (date(2031, 8, 18), date(2040, 1, 1)):
        (f,) = check_recycled_content(on, {"Pb": (10 * KG, 8500)})
        assert f.basis == "battery" and f.meets


def test_day_before_a_tier_uses_the_earlier_one() -> None:
    """2036-08-17 is still under the 2031 tier: Ni 10 % meets 6 % but would fail 15 %."""
    (f,) = check_recycled_content(date(2036, 8, 17), {"Ni": (1000, 100)})
    assert f.meets and f.in_force_from == date(2031, 8, 18)
    (g,) = check_recycled_content(date(2036, 8, 18), {"Ni": (1000, 100)})
    assert not g.meets and g.article.endswith("8(3)")


def test_before_any_target_is_an_error_not_a_pass() -> None:
    assert tier_in_force(date(2031, 8, 17)) is None
    with pytest.raises(RecycledContentError) as e:
        check_recycled_content(date(2031, 8, 17), {"Co": (100, 100)})
    assert e.value.rule == "recycled_content.no_target"
    assert "2031-08-18" in str(e.value)


def test_absent_zero_and_untargeted_elements_yield_no_finding() -> None:
    on = date(2031, 9, 1)
    grams = {"Co": (0, 0), "Mn": (500, 0), "Ni": (1000, 60)}
    assert [f.element for f in check_recycled_content(on, grams)] == ["Ni"]


@pytest.mark.parametrize(
    "bad",
    [(100, 101), (100, -1), (-1, 0), (100.0, 10), (100, True), (100,)],
)
def test_masses_that_do_not_add_up_are_refused(bad: object) -> None:
    with pytest.raises(RecycledContentError) as e:
        check_recycled_content(date(2031, 9, 1), {"Co": bad})  # type: ignore[dict-item]
    assert e.value.rule == "recycled_content.masses"


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"tiers": []},
        {"tiers": [{"from": date(2031, 8, 18), "article": "x", "targets": []}]},
        {
            "tiers": [
                {
                    "from": date(2031, 8, 18),
                    "article": "x",
                    "targets": [{"element": "Co", "min_bp": 16.0, "basis": "battery"}],
                }
            ]
        },
        {
            "tiers": [
                {
                    "from": date(2031, 8, 18),
                    "article": "x",
                    "targets": [{"element": "Co", "min_bp": 1600, "basis": "cathode"}],
                }
            ]
        },
    ],
)
def test_malformed_target_data_is_refused(doc: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"battery_recycled_content\.toml"):
        parse_tiers(doc)
