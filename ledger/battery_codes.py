"""Battery unit codes: China's GB/T 34014-2017 traction-battery code and EU battery-passport ids.

Pure: no I/O, no clock. Every refusal is a :class:`BatteryCodeError` (a ``ValueError``) whose
``rule`` is a stable dotted name (``gbt34014.length``, ``gs1.gtin_check_digit``, …) and whose
message says what is wrong and what to do; :func:`classify_unit_code` is the single entry point.

Sources (looked up for this module; what each one confirms is noted where it is used)

[GB] GB/T 34014-2017 《汽车动力蓄电池编码规则》 "Coding regulation for automotive traction
     battery", issued 2017-07-12, in force 2018-02-01 (SAC/TC 114). Paid text; the parts read
     were the free excerpts and translations:
     - https://chinaautoregs.com/4357.html (Chinese text with translation, §1-§4.3):
       §3.1 a code is "a set of numbers and English letters"; §4.1 the objects are packs,
       modules and cells, including those in cascade utilisation (梯级利用); §4.2 the code has
       a design part and a production part, which "may be coded separately or combined", and
       "a cascade-utilisation product shall be coded anew under these rules, and the code of
       the original product shall be kept".
     - http://www.huayunly.cn/standard/GBT34014-2017.html (codeofchina translation, §1-§4.2).
     - https://blob.wenxiaobai.com/article/182b51b5-e340-caf7-648b-030a5585f04a
       ("24位汽车动力蓄电池编码解读", after sohu.com): the 24 positions — manufacturer code
       (3, allotted by MIIT through the 编码备案系统), product type P pack / M module / C cell,
       battery type (B 磷酸铁锂 LFP, E 三元 NCM/NCA; "others in the table"), specification
       code (2, filed by the maker), traceability code (7, filed by the maker), production date
       X15-X17 (year, month, day), serial X18-X24 = the day's sequence number 1..9999999.
[CX] Catena-X / Eclipse Tractus-X semantic model io.catenax.traction_battery_code 2.0.0,
     ``TractionBatteryCode.ttl`` (repository eclipse-tractusx/sldt-semantic-models), regular
     expression for a 24-character GB/T 34014 code:
     ``[A-Z0-9]{3}[PMC][A-GZ][A-Z0-9]{2}[A-Z0-9]{7}[1-9A-GH-NPR-Y][1-9A-C][0-9A-GH-NPR-Y][0-9]{7}``
     and example value ``X12MCPM27KLPCLX2M2382320``. Also at
     https://catenax-ev.github.io/docs/standards/CX-0093-AspectModelTractionBatteryCode
[EU] Regulation (EU) 2023/1542 (batteries), Art. 77 (battery passport from 18 Feb 2027 for
     LMT, industrial > 2 kWh and EV batteries; one passport per individual battery) and
     Art. 77 / Annex XIII: reached through a QR code, with a unique identifier that conforms to
     ISO/IEC 15459 — e.g. https://www.collectadpp.com/glossary/article-77 ,
     https://www.collectadpp.com/guides/unique-identifiers ; consolidated text at
     https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX%3A02023R1542-20240718
[GS1] GS1 (an ISO/IEC 15459 issuing agency) identifiers as used for the passport:
     - GS1 Digital Link URI syntax (https://ref.gs1.org/standards/digital-link/uri-syntax/ ,
       summarised at https://github.com/bwipp/postscriptbarcode/wiki/GS1-Digital-Link-URIs):
       ``http(s)://<domain>[/<own path>]/01/<GTIN>[/22/..][/10/<batch>]/21/<serial>[?query]``,
       qualifiers in the order 22, 10, 21; characters a URI cannot carry are percent-encoded.
     - GS1 General Specifications §7.9.1 (standard check digit, mod 10, weights 3,1 from the
       right) — e.g. https://socket.dev/npm/package/@ollah666/checkdigitcalculator (GS1 Germany).
     - AI (01) GTIN N14; AI (21) serial X..20 and AI (10) batch X..20, character class from
       GS1's own GS1DigitalLinkToolkit.js AI table:
       ``[\\x21-\\x22\\x25-\\x2F\\x30-\\x39\\x41-\\x5A\\x5F\\x61-\\x7A]``;
       element-string notation ``(01)09521234543213(21)12345``.
     DIN DKE SPEC 99100 (the "Battery Pass" content guidance) leaves the identifier to the
     ISO/IEC 15459 issuing agency; only the GS1 forms above are validated here.

Not confirmed, so not enforced (fail closed only on what is confirmed):
- The GB/T 34014 year-code table (which character means which year) could not be read from
  any source, so :attr:`GbtBatteryCode.production_date` is ``None`` unless the caller passes
  a year table copied from the standard (:func:`parse_gbt34014`'s ``year_table``).
- The meaning of battery-type codes other than B and E; the set A-G, Z is enforced ([CX]).
- The separately coded design / production parts (§4.2 "may be coded separately") and a
  shorter form that [CX] also lists (ending ``R`` + P/M/C); both are refused: only the
  combined 24-character code is accepted.
- GB/T 34015 (梯次利用) / the 2018 溯源管理暂行规定 were not found in a readable form; the
  second-life rule used here is GB/T 34014 §4.2 only (new code, original kept).
- Other ISO/IEC 15459 schemes (IEC, ODETTE, …) and GS1 AIs 8006/8010/235 are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, TypeAlias
from urllib.parse import unquote, urlsplit

__all__ = [
    "BATTERY_TYPE_NAMES",
    "PRODUCT_TYPES",
    "BatteryCodeError",
    "EuPassportId",
    "GbtBatteryCode",
    "Scheme",
    "UnitCode",
    "classify_unit_code",
    "gtin_check_digit",
    "parse_eu_passport_id",
    "parse_gbt34014",
    "second_life_pair",
]

Scheme: TypeAlias = Literal["gbt34014", "gs1"]

GBT_LENGTH: Final = 24
_ALNUM: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# [GB] / [CX]: P pack, M module, C cell.
PRODUCT_TYPES: Final[Mapping[str, str]] = {"P": "pack", "M": "module", "C": "cell"}
# [CX]: battery-type code is one of A-G or Z. Meanings confirmed only for B and E ([GB]).
_BATTERY_TYPES: Final = frozenset("ABCDEFGZ")
BATTERY_TYPE_NAMES: Final[Mapping[str, str]] = {
    "B": "lithium iron phosphate (LFP)",
    "E": "ternary lithium (NCM/NCA)",
}
# [CX]: month code 1-9 for January-September, A B C for October-December.
_MONTHS: Final[Mapping[str, int]] = {
    **{str(n): n for n in range(1, 10)},
    "A": 10,
    "B": 11,
    "C": 12,
}
# Day code: 1-9, then letters for 10-31. [CX]'s class is [0-9A-GH-NPR-Y]; a day 0 does not
# exist and the class as written (A-G, H-N) also admits I. 31 days need 9 digits + 22
# letters, which is exactly A-Y without I, O and Q, so that is the set used (I, O, Q and 0
# refused); the ordering (A = 10 … Y = 31) is the only one consistent with that count but is
# not confirmed by the standard's text.
_DAY_LETTERS: Final = "ABCDEFGHJKLMNPRSTUVWXY"
_DAYS: Final[Mapping[str, int]] = {
    **{str(n): n for n in range(1, 10)},
    **{c: 10 + i for i, c in enumerate(_DAY_LETTERS)},
}
# [CX]: year character class (its A-G, H-N range also admits I; I is refused here, as for
# days: I and O are never used beside 1 and 0 in these tables).
_YEAR_CODES: Final = frozenset("123456789ABCDEFGHJKLMNPRSTUVWXY")
# Days in each month in a leap year: the most a day code may say without knowing the year.
_MAX_DAY: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class BatteryCodeError(ValueError):
    """A unit code broke a rule; ``rule`` names it (stable), the message says what to do."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


@dataclass(frozen=True, slots=True)
class GbtBatteryCode:
    """A valid 24-character GB/T 34014-2017 traction-battery code, split into its fields."""

    code: str
    manufacturer: str  # positions 1-3
    product_type: str  # position 4: P, M or C
    battery_type: str  # position 5
    spec: str  # positions 6-7
    trace: str  # positions 8-14
    year_code: str  # position 15
    month: int  # position 16, decoded
    day: int  # position 17, decoded
    serial: str  # positions 18-24, seven digits, not all zero
    production_date: date | None  # only when a year table was supplied

    @property
    def product_kind(self) -> str:
        """``pack``, ``module`` or ``cell``."""
        return PRODUCT_TYPES[self.product_type]


@dataclass(frozen=True, slots=True)
class EuPassportId:
    """A GS1 identifier of one battery: GTIN (normalised to 14 digits) plus serial."""

    code: str
    gtin: str
    serial: str
    batch: str | None
    form: Literal["digital_link", "element_string"]

    @property
    def key(self) -> str:
        """Canonical element-string form, the same for every spelling of one battery."""
        return f"(01){self.gtin}(21){self.serial}"


@dataclass(frozen=True, slots=True)
class UnitCode:
    """What :func:`classify_unit_code` found."""

    scheme: Scheme
    gbt: GbtBatteryCode | None = None
    eu: EuPassportId | None = None

    @property
    def key(self) -> str:
        """The canonical text to store and to compare for duplicates."""
        if self.gbt is not None:
            return self.gbt.code
        assert self.eu is not None
        return self.eu.key


# --- GB/T 34014-2017 --------------------------------------------------------------------


def _fail(rule: str, message: str) -> BatteryCodeError:
    return BatteryCodeError(rule, message)


def parse_gbt34014(code: str, *, year_table: Mapping[str, int] | None = None) -> GbtBatteryCode:
    """Validate and split a GB/T 34014-2017 code; raise :class:`BatteryCodeError` if it is not one.

    ``year_table`` (year character -> year), when given, must come from the standard's own
    table; the date is then decoded and checked against the calendar.
    """
    if len(code) != GBT_LENGTH:
        raise _fail(
            "gbt34014.length",
            f"a GB/T 34014-2017 battery code has {GBT_LENGTH} characters, this one has "
            f"{len(code)}; copy the whole code from the label, without spaces or separators",
        )
    bad = sorted({c for c in code if c not in _ALNUM})
    if bad:
        hint = (
            " (write letters in upper case)"
            if any(c.isascii() and c.isalpha() for c in bad)
            else ""
        )
        raise _fail(
            "gbt34014.charset",
            f"a GB/T 34014-2017 code holds only digits and upper-case letters A-Z; found "
            f"{''.join(bad)!r}{hint}",
        )
    product_type = code[3]
    if product_type not in PRODUCT_TYPES:
        raise _fail(
            "gbt34014.product_type",
            f"position 4 is the product type: P (pack), M (module) or C (cell), not "
            f"{product_type!r}; check the code",
        )
    battery_type = code[4]
    if battery_type not in _BATTERY_TYPES:
        raise _fail(
            "gbt34014.battery_type",
            f"position 5 is the battery type, one of A-G or Z, not {battery_type!r}; "
            "check the code",
        )
    year_code, month_code, day_code = code[14], code[15], code[16]
    if year_code not in _YEAR_CODES:
        raise _fail(
            "gbt34014.year",
            f"position 15 is the production-year code (1-9 or a letter other than I, O, Q, Z), "
            f"not {year_code!r}; check the code",
        )
    month = _MONTHS.get(month_code)
    if month is None:
        raise _fail(
            "gbt34014.month",
            f"position 16 is the production month: 1-9, or A, B, C for October to December, "
            f"not {month_code!r}; check the code",
        )
    day = _DAYS.get(day_code)
    if day is None:
        raise _fail(
            "gbt34014.day",
            f"position 17 is the production day: 1-9, or a letter A-Y other than I, O, Q for "
            f"days 10-31, not {day_code!r}; check the code",
        )
    if day > _MAX_DAY[month - 1]:
        raise _fail(
            "gbt34014.date",
            f"positions 16-17 say day {day} of month {month}, which does not exist; check the code",
        )
    serial = code[17:]
    if not serial.isdigit():
        raise _fail(
            "gbt34014.serial",
            f"positions 18-24 are the serial number, seven digits, not {serial!r}; check the code",
        )
    if int(serial) == 0:
        raise _fail(
            "gbt34014.serial",
            "positions 18-24 are the day's serial number, 0000001-9999999; 0000000 is not "
            "one; check the code",
        )
    production_date = None
    if year_table is not None:
        year = year_table.get(year_code)
        if year is None:
            raise _fail(
                "gbt34014.year",
                f"the year code {year_code!r} is not in the year table supplied; check the code "
                "or the table",
            )
        try:
            production_date = date(year, month, day)
        except ValueError:
            raise _fail(
                "gbt34014.date",
                f"positions 15-17 say {year}-{month:02d}-{day:02d}, which does not exist; "
                "check the code",
            ) from None
    return GbtBatteryCode(
        code=code,
        manufacturer=code[0:3],
        product_type=product_type,
        battery_type=battery_type,
        spec=code[5:7],
        trace=code[7:14],
        year_code=year_code,
        month=month,
        day=day,
        serial=serial,
        production_date=production_date,
    )


def second_life_pair(original: str, repurposed: str) -> tuple[GbtBatteryCode, GbtBatteryCode]:
    """Check a second-life (梯级利用) product's new code against the original it keeps.

    GB/T 34014-2017 §4.2: a cascade-utilisation product is coded anew under the same rules and
    the original product's code is kept. Both must be valid codes and they must differ.
    Nothing else about the pair is confirmed (the repurposer may be another manufacturer and
    may re-package a pack as modules), so nothing else is checked.
    """
    old = parse_gbt34014(original)
    new = parse_gbt34014(repurposed)
    if old.code == new.code:
        raise _fail(
            "gbt34014.second_life_same_code",
            "a second-life product gets a new GB/T 34014 code and keeps the original one "
            "beside it; the two codes given are the same — give the new code",
        )
    return old, new


# --- GS1 identifiers for the EU battery passport ------------------------------------------


def gtin_check_digit(body: str) -> int:
    """GS1 General Specifications §7.9.1: weights 3, 1, 3, … from the right, mod 10."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


_GS1_X: Final = re.compile(r"[\x21-\x22\x25-\x2F\x30-\x39\x41-\x5A\x5F\x61-\x7A]{1,20}")
_ELEMENT_STRING: Final = re.compile(r"\(01\)(\d+)(?:\(10\)([^()]+))?\(21\)([^()]+)")
_QUALIFIER_ORDER: Final = ("22", "10", "21")


def _gtin(text: str) -> str:
    if not text.isdigit() or len(text) not in (8, 12, 13, 14):
        raise _fail(
            "gs1.gtin_format",
            f"a GTIN (AI 01) is 8, 12, 13 or 14 digits, not {text!r}; copy it from the label",
        )
    if gtin_check_digit(text[:-1]) != int(text[-1]):
        raise _fail(
            "gs1.gtin_check_digit",
            f"the GTIN {text} fails its GS1 check digit (expected "
            f"{gtin_check_digit(text[:-1])} last); a digit was mistyped — copy it again",
        )
    return text.rjust(14, "0")


def _x20(ai: str, value: str, what: str) -> str:
    if not _GS1_X.fullmatch(value):
        raise _fail(
            f"gs1.{what}",
            f"the {what} (AI {ai}) is 1-20 characters from the GS1 set (letters, digits and "
            f"!\"%&'()*+,-./_), not {value!r}",
        )
    return value


def _parse_digital_link(code: str) -> EuPassportId:
    parts = urlsplit(code)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise _fail("gs1.digital_link", "a GS1 Digital Link is an http(s) URI with a domain")
    segments = parts.path.split("/")
    try:
        at = len(segments) - 1 - segments[::-1].index("01")
    except ValueError:
        raise _fail(
            "gs1.digital_link",
            "the URI has no /01/<GTIN> path element; a battery passport link names the GTIN",
        ) from None
    rest = segments[at:]
    if len(rest) % 2:
        raise _fail("gs1.digital_link", "the path after /01/ must be pairs of AI / value")
    pairs = [(rest[i], unquote(rest[i + 1])) for i in range(0, len(rest), 2)]
    gtin = _gtin(pairs[0][1])
    qualifiers = pairs[1:]
    ais = [ai for ai, _ in qualifiers]
    unknown = [ai for ai in ais if ai not in _QUALIFIER_ORDER]
    if unknown:
        raise _fail(
            "gs1.digital_link",
            f"path element /{unknown[0]}/ is not a GTIN qualifier this ledger reads (22, 10, 21)",
        )
    if ais != sorted(ais, key=_QUALIFIER_ORDER.index) or len(set(ais)) != len(ais):
        raise _fail(
            "gs1.digital_link", "GTIN qualifiers must appear once each, in order 22, 10, 21"
        )
    values = dict(qualifiers)
    if "21" not in values:
        raise _fail(
            "gs1.serial_missing",
            "the link names a GTIN but no serial (/21/…); a battery passport identifies one "
            "battery (Reg. (EU) 2023/1542 Art. 77), so it needs the serial",
        )
    serial = _x20("21", values["21"], "serial")
    batch = _x20("10", values["10"], "batch") if "10" in values else None
    return EuPassportId(code=code, gtin=gtin, serial=serial, batch=batch, form="digital_link")


def _parse_element_string(code: str) -> EuPassportId:
    m = _ELEMENT_STRING.fullmatch(code)
    if m is None:
        raise _fail(
            "gs1.element_string",
            "a GS1 element string for a battery reads (01)<GTIN>[(10)<batch>](21)<serial>",
        )
    gtin = _gtin(m.group(1))
    batch = _x20("10", m.group(2), "batch") if m.group(2) is not None else None
    serial = _x20("21", m.group(3), "serial")
    return EuPassportId(code=code, gtin=gtin, serial=serial, batch=batch, form="element_string")


def parse_eu_passport_id(code: str) -> EuPassportId:
    """Validate a GS1 Digital Link URI or GS1 element string naming one battery."""
    if code.lower().startswith(("http://", "https://")):
        return _parse_digital_link(code)
    if code.startswith("(01)"):
        return _parse_element_string(code)
    raise _fail(
        "eu_passport.scheme",
        "an EU battery-passport identifier is read here as a GS1 Digital Link URI "
        "(https://…/01/<GTIN>/21/<serial>) or element string ((01)<GTIN>(21)<serial>)",
    )


def classify_unit_code(code: str) -> UnitCode:
    """Say which scheme ``code`` belongs to and return it parsed; raise if it is neither.

    Never guesses: a text that looks like one scheme is judged by that scheme's rules alone, so
    the error names the rule broken. Surrounding spaces are refused, not stripped.
    """
    if code != code.strip() or not code:
        raise _fail(
            "unit_code.whitespace",
            "the unit code is empty or has leading/trailing spaces; send the code alone",
        )
    if code.lower().startswith(("http://", "https://")) or code.startswith("("):
        return UnitCode(scheme="gs1", eu=parse_eu_passport_id(code))
    if len(code) == GBT_LENGTH or code.isalnum():
        return UnitCode(scheme="gbt34014", gbt=parse_gbt34014(code))
    raise _fail(
        "unit_code.unknown_scheme",
        "the unit code is neither a 24-character GB/T 34014-2017 code nor a GS1 battery "
        "passport identifier (https://…/01/<GTIN>/21/<serial> or (01)<GTIN>(21)<serial>)",
    )
