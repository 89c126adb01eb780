"""RFC 8785 canonical bytes: the library against the RFC's published examples,
our fast path against the library, and the refusals of non-canonical text."""

from __future__ import annotations

import json
import struct

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import MAX_SAFE_INTEGER, canonical_bytes, parse_canonical
from ledger.errors import RecordRefused

# RFC 8785 §3.2.2 example (input as sent, output as canonicalised).
RFC_INPUT = (
    '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n'
    '  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
    '  "literals": [null, true, false]\n}'
)
RFC_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)


def test_library_reproduces_rfc_section_3_2_2_example() -> None:
    assert rfc8785.dumps(json.loads(RFC_INPUT)) == RFC_OUTPUT.encode("utf-8")


# RFC 8785 Appendix B: IEEE 754 doubles (hex) and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
]


@pytest.mark.parametrize(("hexbits", "expected"), APPENDIX_B)
def test_library_number_serialisation_matches_appendix_b(hexbits: str, expected: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(hexbits))[0]
    assert rfc8785.dumps(value) == expected.encode()


def test_property_sorting_example_uses_utf16_order() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 (a surrogate
    # pair) sorts before U+FB33 even though its code point is larger.
    obj = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = list(json.loads(canonical_bytes(obj)))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_our_canonical_form_of_the_rfc_string_and_literals() -> None:
    obj = {k: v for k, v in json.loads(RFC_INPUT).items() if k != "numbers"}
    expected = '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert canonical_bytes(obj) == expected.encode()
    assert parse_canonical(expected.encode()) == obj


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_path_equals_rfc8785(value: object) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_canonical_text_round_trips(value: dict[str, object]) -> None:
    try:
        data = canonical_bytes(value)
    except RecordRefused:
        return  # lone surrogates: not representable
    assert parse_canonical(data) == value


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b'{"a":1, "b":2}', "json.not_canonical"),
        (b'{"b":1,"a":2}', "json.not_canonical"),
        (b'{"a":"\\u0041"}', "json.not_canonical"),
        (b'{"a":1}\n', "json.not_canonical"),
        (b'{"a":1,"a":1}', "json.duplicate_key"),
        (b'{"a":1.5}', "json.float"),
        (b'{"a":1e2}', "json.float"),
        (b'{"a":1.0}', "json.float"),
        (b'{"a":-0.0}', "json.float"),
        (b'{"a":NaN}', "json.float"),
        (b'{"a":Infinity}', "json.float"),
        (b'{"a":9007199254740992}', "json.integer_range"),
        (b'{"a":-9007199254740992}', "json.integer_range"),
        (b'{"a":"\\ud800"}', "json.malformed"),
        (b'{"a":"\xff"}', "json.malformed"),
        (b"[1,2]", "json.malformed"),
        (b'{"a":', "json.malformed"),
        (b"", "json.malformed"),
    ],
)
def test_non_canonical_and_malformed_text_is_refused(text: bytes, code: str) -> None:
    with pytest.raises(RecordRefused) as info:
        parse_canonical(text)
    assert info.value.code == code


def test_floats_cannot_be_canonicalised_for_signing() -> None:
    with pytest.raises(RecordRefused) as info:
        canonical_bytes({"body": {"mass_g": 1.5}})
    assert info.value.code == "json.float"
    assert info.value.path == "body.mass_g"


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Canonical bytes with one edit: a byte changed, inserted or dropped, or a member repeated."""
    pos = st.integers(0, max(len(data) - 1, 0))
    return st.one_of(
        st.just(data),
        st.tuples(pos, st.sampled_from(b' ,:{}[]"0123456789.eE-+\\ua')).map(
            lambda t: data[: t[0]] + bytes([t[1]]) + data[t[0] + 1 :]
        ),
        st.tuples(pos, st.sampled_from(b' ,:"0.1eE\\')).map(
            lambda t: data[: t[0]] + bytes([t[1]]) + data[t[0] :]
        ),
        pos.map(lambda p: data[:p] + data[p + 1 :]),
        st.just(data[:-1] + b"," + data[1:]),  # {"a":1} -> {"a":1,"a":1}
    )


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_the_fast_parse_accepts_only_what_the_strict_parse_accepts(data: st.DataObject) -> None:
    """parse_canonical tries plain json.loads first: it must never accept a text
    the strict, hook-per-member parse refuses, nor read it differently."""
    from ledger.canonical import _parse_canonical_fast, _parse_canonical_strict

    value = data.draw(st.dictionaries(st.text(max_size=4), json_values, min_size=1, max_size=4))
    try:
        text = canonical_bytes(value)
    except RecordRefused:
        return  # lone surrogates: not representable
    mutated = data.draw(_mutations(text))
    fast = _parse_canonical_fast(mutated)
    try:
        strict: object = _parse_canonical_strict(mutated)
    except RecordRefused as exc:
        strict = exc
    if fast is not None:
        assert fast == strict
    if mutated == text:
        assert fast == value
