"""The one place where canonical bytes are produced and checked.

Records are signed and hashed over their RFC 8785 (JSON Canonicalization
Scheme, JCS) form. Producing it: :func:`canonical_bytes`. Checking that a
submitted text already *is* canonical: :func:`parse_canonical`.

Envelopes never hold floats, and their integers stay within I-JSON's
±(2^53 - 1) (RFC 7493 §2.2, which RFC 8785 §3.2.2.3 relies on). For such
values, and when every character is ASCII, JCS output equals Python's
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``:
the escapes JCS prescribes (RFC 8785 §3.2.2.2: ``\\b \\t \\n \\f \\r \\" \\\\``
and ``\\u00xx`` in lowercase for other controls) are the ones ``json`` writes,
and UTF-16 key order (§3.2.3) equals code-point order for ASCII keys. That
fast path is five times cheaper than the pure-Python ``rfc8785`` encoder,
which handles every other text. A property test pins the equivalence.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from ledger.errors import RecordRefused

MAX_SAFE_INTEGER = 2**53 - 1

JSONValue = Any  # a parsed JSON value: dict, list, str, int, bool or None


def canonical_bytes(value: JSONValue) -> bytes:
    """RFC 8785 bytes of ``value`` (no floats; integers within ±(2^53-1))."""
    _check_numbers(value, "$")
    return canonical_bytes_unchecked(value)


def canonical_bytes_unchecked(value: JSONValue) -> bytes:
    """:func:`canonical_bytes` without its walk over the numbers: only for a value whose
    numbers the caller made itself, all integers within ±(2^53-1) (the simulator's)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if text.isascii():
        return text.encode("ascii")
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise RecordRefused("json.malformed", f"cannot canonicalise: {exc}") from None


def parse_canonical(data: bytes | str) -> dict[str, JSONValue]:
    """Parse an envelope's JSON text and insist it is canonical.

    Refuses (with a :class:`RecordRefused`) malformed UTF-8 or JSON,
    duplicate member names, floats, NaN/Infinity, integers beyond I-JSON's
    range, a top level that is not an object, and any text that differs from
    its own canonical form (whitespace, key order, escapes, number forms).
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    fast = _parse_canonical_fast(raw)
    return fast if fast is not None else _parse_canonical_strict(raw)


def _parse_canonical_strict(raw: bytes) -> dict[str, JSONValue]:
    """Parse with a hook at every object and number, so a refusal names its rule."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_int=_safe_int,
            parse_constant=_no_constant,
        )
    except RecordRefused:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordRefused(
            "json.malformed", f"not valid UTF-8 JSON text ({_short(exc)}); send RFC 8785 bytes"
        ) from None
    if not isinstance(value, dict):
        raise RecordRefused("json.malformed", "the envelope must be a JSON object")
    try:
        again = canonical_bytes_unchecked(value)
    except UnicodeEncodeError:
        raise RecordRefused("json.malformed", "a string holds a lone surrogate") from None
    if again != raw:
        raise RecordRefused(
            "json.not_canonical",
            "the text is not in RFC 8785 canonical form (sorted keys, no whitespace, "
            "shortest escapes); canonicalise before signing",
        )
    return value


def _parse_canonical_fast(raw: bytes) -> dict[str, JSONValue] | None:
    """The common case at C speed: plain ``json.loads``, the number checks, and
    re-encoding must give back the very bytes. None sends the text down the
    strict path, which names the exact rule broken.

    Equivalent to the strict path on every text it accepts: a repeated member
    name loses one of its values in a dict, so the re-encoded text is shorter
    and differs; NaN, Infinity, floats and integers out of range are caught by
    :func:`_check_numbers` (a float such as ``1.0`` would otherwise re-encode
    to the same text). tests/test_canonical.py checks the two paths agree.
    """
    try:
        value = json.loads(raw)
        if not isinstance(value, dict):
            return None
        _check_numbers(value, "$")
        if canonical_bytes_unchecked(value) != raw:
            return None
    except (RecordRefused, ValueError, RecursionError, UnicodeError):
        return None
    return value


def _no_duplicates(pairs: list[tuple[str, JSONValue]]) -> dict[str, JSONValue]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [k for k, _ in pairs]
        dup = next(k for k in names if names.count(k) > 1)
        raise RecordRefused("json.duplicate_key", f"member {dup!r} appears twice", path=dup)
    return obj


def _no_float(text: str) -> JSONValue:
    raise RecordRefused(
        "json.float", f"number {text[:40]} is not an integer; masses are integer grams"
    )


def _safe_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise RecordRefused("json.integer_range", "integers must lie within ±(2^53-1)")
    return value


def _no_constant(text: str) -> JSONValue:
    raise RecordRefused("json.float", f"{text} is not a JSON number")


def _check_numbers(value: JSONValue, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise RecordRefused(
                "json.integer_range", "integers must lie within ±(2^53-1)", path=path[2:] or None
            )
        return
    if isinstance(value, float):
        raise RecordRefused("json.float", "floats are not allowed", path=path[2:] or None)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise RecordRefused("json.malformed", "object keys must be strings")
            _check_numbers(v, f"{path}.{k}")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_numbers(v, f"{path}[{i}]")
        return
    raise RecordRefused("json.malformed", f"{type(value).__name__} is not a JSON value")


def _short(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0][:120]
