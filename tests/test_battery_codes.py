"""Unit codes of batteries: GB/T 34014-2017 and GS1 identifiers for the EU battery passport.

Sources are cited in ledger/battery_codes.py. The GB/T example is the one published with the
Catena-X TractionBatteryCode model (eclipse-tractusx/sldt-semantic-models, 2.0.0); the GTIN
09521234543213 is GS1's own example number (GS1 Digital Link documentation).
"""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.battery_codes import (
    BatteryCodeError,
    classify_unit_code,
    gtin_check_digit,
    parse_eu_passport_id,
    parse_gbt34014,
    second_life_pair,
)

CATENA_X_EXAMPLE = "X12MCPM27KLPCLX2M2382320"
GTIN = "09521234543213"


def _with(code: str, position: int, char: str) -> str:
    """Replace the 1-based ``position`` of ``code``."""
    return code[: position - 1] + char + code[position:]


def test_catena_x_example_parses_field_by_field() -> None:
    """X12 | M | C | PM | 27KLPCL | X 2 M | 2382320: a module, February, day code M = 21."""
    c = parse_gbt34014(CATENA_X_EXAMPLE)
    assert (c.manufacturer, c.product_type, c.battery_type) == ("X12", "M", "C")
    assert (c.spec, c.trace, c.year_code) == ("PM", "27KLPCL", "X")
    assert (c.month, c.day, c.serial) == (2, 21, "2382320")
    assert c.product_kind == "module"
    assert c.production_date is None  # the year table is not confirmed, so not decoded


def test_year_table_supplied_decodes_the_date() -> None:
    c = parse_gbt34014(CATENA_X_EXAMPLE, year_table={"X": 2024})
    assert c.production_date is not None and c.production_date.isoformat() == "2024-02-21"


def test_year_table_without_the_code_and_impossible_day_are_refused() -> None:
    with pytest.raises(BatteryCodeError) as e:
        parse_gbt34014(CATENA_X_EXAMPLE, year_table={"A": 2020})
    assert e.value.rule == "gbt34014.year"
    feb29 = _with(CATENA_X_EXAMPLE, 17, "W")  # W = 29
    assert parse_gbt34014(feb29, year_table={"X": 2024}).day == 29
    with pytest.raises(BatteryCodeError) as e:
        parse_gbt34014(feb29, year_table={"X": 2023})
    assert e.value.rule == "gbt34014.date"


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        (CATENA_X_EXAMPLE[:-1], "gbt34014.length"),
        (CATENA_X_EXAMPLE + "1", "gbt34014.length"),
        (CATENA_X_EXAMPLE.lower(), "gbt34014.charset"),
        (_with(CATENA_X_EXAMPLE, 10, "-"), "gbt34014.charset"),
        (_with(CATENA_X_EXAMPLE, 4, "X"), "gbt34014.product_type"),
        (_with(CATENA_X_EXAMPLE, 5, "H"), "gbt34014.battery_type"),
        (_with(CATENA_X_EXAMPLE, 15, "O"), "gbt34014.year"),
        (_with(CATENA_X_EXAMPLE, 15, "0"), "gbt34014.year"),
        (_with(CATENA_X_EXAMPLE, 16, "D"), "gbt34014.month"),
        (_with(CATENA_X_EXAMPLE, 16, "0"), "gbt34014.month"),
        (_with(CATENA_X_EXAMPLE, 17, "0"), "gbt34014.day"),
        (_with(CATENA_X_EXAMPLE, 17, "I"), "gbt34014.day"),
        (_with(CATENA_X_EXAMPLE, 17, "Z"), "gbt34014.day"),
        (_with(CATENA_X_EXAMPLE, 17, "X"), "gbt34014.date"),  # X = 30, month 2
        (_with(CATENA_X_EXAMPLE, 20, "A"), "gbt34014.serial"),
        (CATENA_X_EXAMPLE[:17] + "0000000", "gbt34014.serial"),
    ],
)
def test_each_broken_rule_has_its_own_error(code: str, rule: str) -> None:
    with pytest.raises(BatteryCodeError) as e:
        parse_gbt34014(code)
    assert e.value.rule == rule
    assert isinstance(e.value, ValueError)
    assert rule in str(e.value)


def test_day_letters_cover_exactly_days_10_to_31() -> None:
    days = []
    for ch in string.digits[1:] + string.ascii_uppercase:
        code = _with(_with(CATENA_X_EXAMPLE, 16, "1"), 17, ch)  # January: 31 days
        with contextlib.suppress(BatteryCodeError):
            days.append(parse_gbt34014(code).day)
    assert days == list(range(1, 32))


@given(st.text(max_size=60).filter(lambda s: len(s) != 24))
def test_any_text_not_24_long_is_refused_for_gbt(text: str) -> None:
    with pytest.raises(BatteryCodeError) as e:
        parse_gbt34014(text)
    assert e.value.rule == "gbt34014.length"


def test_second_life_keeps_the_original_and_needs_a_new_code() -> None:
    new = "R01PBAA1234567X2M0000001"
    old, repurposed = second_life_pair(CATENA_X_EXAMPLE, new)
    assert (old.code, repurposed.code) == (CATENA_X_EXAMPLE, new)
    with pytest.raises(BatteryCodeError) as e:
        second_life_pair(CATENA_X_EXAMPLE, CATENA_X_EXAMPLE)
    assert e.value.rule == "gbt34014.second_life_same_code"


def test_gtin_check_digit_gs1_examples() -> None:
    assert gtin_check_digit(GTIN[:-1]) == 3
    assert gtin_check_digit("629104150021") == 3


@pytest.mark.parametrize(
    "code",
    [
        f"https://id.gs1.org/01/{GTIN}/21/12345",
        f"https://example.com/passport/01/{GTIN}/10/ABC123/21/SN-0001",
        f"HTTPS://id.example.eu/01/{GTIN[1:]}/21/A%2FB",
        f"(01){GTIN}(21)12345",
    ],
)
def test_gs1_forms_name_one_battery(code: str) -> None:
    pid = parse_eu_passport_id(code)
    assert pid.gtin == GTIN
    assert pid.key.startswith(f"(01){GTIN}(21)")


def test_two_spellings_of_one_battery_share_a_key() -> None:
    a = classify_unit_code(f"https://id.gs1.org/01/{GTIN}/21/12345")
    b = classify_unit_code(f"(01){GTIN}(21)12345")
    assert a.scheme == b.scheme == "gs1"
    assert a.key == b.key


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        (f"https://id.gs1.org/01/{GTIN[:-1]}4/21/1", "gs1.gtin_check_digit"),
        ("https://id.gs1.org/01/95212345/21/1", "gs1.gtin_check_digit"),
        ("https://id.gs1.org/01/1234567/21/1", "gs1.gtin_format"),
        (f"https://id.gs1.org/01/{GTIN}", "gs1.serial_missing"),
        (f"https://id.gs1.org/01/{GTIN}/10/LOT1", "gs1.serial_missing"),
        (f"https://id.gs1.org/01/{GTIN}/21/{'9' * 21}", "gs1.serial"),
        (f"https://id.gs1.org/01/{GTIN}/21/a%20b", "gs1.serial"),
        (f"https://id.gs1.org/01/{GTIN}/21/1/10/LOT", "gs1.digital_link"),
        (f"https://id.gs1.org/01/{GTIN}/235/1", "gs1.digital_link"),
        ("https://id.gs1.org/passport/123", "gs1.digital_link"),
        ("ftp://id.gs1.org/01/09521234543213/21/1", "unit_code.unknown_scheme"),
        (f"(01){GTIN}", "gs1.element_string"),
        (" " + CATENA_X_EXAMPLE, "unit_code.whitespace"),
        ("", "unit_code.whitespace"),
        ("BAT-0001", "unit_code.unknown_scheme"),
        ("X12MCPM27KLPCLX2M238232", "gbt34014.length"),
    ],
)
def test_classify_names_the_rule_broken(code: str, rule: str) -> None:
    with pytest.raises(BatteryCodeError) as e:
        classify_unit_code(code)
    assert e.value.rule == rule


def test_classify_gbt() -> None:
    u = classify_unit_code(CATENA_X_EXAMPLE)
    assert u.scheme == "gbt34014" and u.gbt is not None and u.key == CATENA_X_EXAMPLE
