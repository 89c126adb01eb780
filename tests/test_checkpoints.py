"""ledger/checkpoints.py: C2SP signed-note checkpoints, made and checked.

External anchors:

- golang.org/x/mod/sumdb/note's documented example (the package doc of
  note.go): the signer key ``PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK…`` signs
  the two-line text to exactly ``— PeterNeumann x08go/ZJku…`` (Ed25519 is
  deterministic, RFC 8032), and its verifier key is
  ``PeterNeumann+c74f20a3+ARpc…``. Our note signature and verifier key
  reproduce both byte for byte, so any C2SP/Go verifier accepts our notes.
- transparency-dev/formats note/note_cosigv1_test.go: the cosignature
  verifier key ``remora.n621.de+da77ade7+BOvN…`` (type 0x04: our key ID
  computation with type byte 4 gives da77ade7), and a timestamped signature
  whose bytes 4..12 are the big-endian time 1727964367.

A checkpoint, worked out (origin ``example.com/log``, 5 leaves, root 32 zero
bytes): the note text is ``"example.com/log\\n5\\nAAAA…AAA=\\n"``; the Ed25519
line signs exactly those bytes; the timestamped line signs
``"cosignature/v1\\ntime 1727964367\\n"`` followed by them, and its signature
bytes start with the key ID (type 4) then ``00 00 00 00 66 fe a4 cf``.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger import checkpoints as cps
from ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    note_key_id,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    sign_checkpoint,
    verifier_key,
    verify_checkpoint,
)
from ledger.signing import Ed25519PrivateKey, public_key_bytes

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngo"
    "tpRZb6KE6RyyBwJnAM=\n"
)
COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
COSIG_SIG = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJ"
    "XORmnFBOBA=="
)

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"rledger-test:ledger").digest())
PUB = public_key_bytes(KEY.public_key())
OTHER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"rledger-test:other").digest())
ORIGIN = "example.com/log"
CP = Checkpoint(ORIGIN, 5, bytes(32))
TIME = 1727964367


def go_key() -> Ed25519PrivateKey:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == 1  # type 0x01: Ed25519, then the 32-byte seed
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_go_note_example_is_reproduced_byte_for_byte() -> None:
    key = go_key()
    assert verifier_key("PeterNeumann", public_key_bytes(key.public_key())) == GO_VKEY
    assert cps.note_signature(GO_TEXT, key, "PeterNeumann") == GO_SIG_LINE
    name, public = parse_verifier_key(GO_VKEY)
    text, [sig] = parse_note(GO_TEXT + "\n" + GO_SIG_LINE)
    assert (name, text, sig.name) == ("PeterNeumann", GO_TEXT, "PeterNeumann")
    assert sig.key_id == bytes.fromhex("c74f20a3") == note_key_id(name, public)


def test_cosignature_key_id_and_timestamp_layout_match_transparency_dev() -> None:
    name, rest = COSIG_VKEY.split("+", 1)
    key_id, key_b64 = rest.split("+")
    raw = base64.b64decode(key_b64)
    assert raw[0] == cps.TIMESTAMPED_ED25519
    assert note_key_id(name, raw[1:], cps.TIMESTAMPED_ED25519).hex() == key_id
    sig = base64.b64decode(COSIG_SIG)
    assert len(sig) == 4 + 8 + 64
    assert int.from_bytes(sig[4:12], "big") == TIME
    # Ours: key ID (type 4), the same 8-byte big-endian time, then Ed25519.
    ours = sign_checkpoint(CP, KEY, time=TIME)
    _, [plain, timed] = parse_note(ours)
    assert timed.key_id == note_key_id(ORIGIN, PUB, cps.TIMESTAMPED_ED25519)
    assert timed.signature[:8] == sig[4:12]
    assert plain.key_id == note_key_id(ORIGIN, PUB)


def test_the_worked_checkpoint() -> None:
    note = sign_checkpoint(CP, KEY, time=TIME)
    text = "example.com/log\n5\n" + base64.b64encode(bytes(32)).decode() + "\n"
    assert note.startswith(text + "\n— example.com/log ")
    assert note.endswith("\n") and note.count("\n— ") == 2
    _, [plain, timed] = parse_note(note)
    KEY.public_key().verify(plain.signature, text.encode())
    KEY.public_key().verify(timed.signature[8:], f"cosignature/v1\ntime {TIME}\n{text}".encode())
    checked = verify_checkpoint(note, PUB)
    assert checked.checkpoint == CP and checked.time == TIME and checked.note == note
    assert verify_checkpoint(note.encode(), PUB, origin=ORIGIN).checkpoint == CP


def test_verifier_keys_round_trip_and_refuse_manglings() -> None:
    vkey = verifier_key(ORIGIN, PUB)
    assert parse_verifier_key(vkey) == (ORIGIN, PUB)
    name, kid, key = vkey.split("+", 2)
    for bad in [
        f"{name}+{kid}",
        f"{name}+00000000+{key}",
        f"other.example/log+{kid}+{key}",
        f"{name}+{kid.upper()}+{key}",
        f"{name}+{kid}+{key[:-2]}",
        f"{name}+{kid}+" + base64.b64encode(b"\x04" + PUB).decode(),
        f"{name} x+{kid}+{key}",
        "",
    ]:
        with pytest.raises(CheckpointError):
            parse_verifier_key(bad)


# --- tampering: every edit of a signed checkpoint is refused --------------------------


def _edits(note: str) -> dict[str, str]:
    text, rest = note.split("\n\n", 1)
    plain, timed, _ = rest.split("\n")
    other = sign_checkpoint(CP, OTHER, time=TIME).split("\n\n", 1)[1].split("\n")[0]
    bigger = sign_checkpoint(Checkpoint(ORIGIN, 6, bytes(32)), KEY, time=TIME)
    root_b64 = base64.b64encode(bytes(32)).decode()
    one_bit = base64.b64encode(b"\x01" + bytes(31)).decode()

    def flip(line: str) -> str:
        head, b64 = line.rsplit(" ", 1)
        raw = bytearray(base64.b64decode(b64))
        raw[-1] ^= 1
        return head + " " + base64.b64encode(bytes(raw)).decode()

    return {
        "size changed": note.replace("\n5\n", "\n6\n", 1),
        "root changed one bit": note.replace(root_b64, one_bit, 1),
        "origin changed": note.replace("example.com/log\n", "example.com/lag\n", 1),
        "signature flipped": f"{text}\n\n{flip(plain)}\n{timed}\n",
        "timestamped signature flipped": f"{text}\n\n{plain}\n{flip(timed)}\n",
        "time changed": f"{text}\n\n{plain}\n{_retime(timed)}\n",
        "signed by another key": f"{text}\n\n{other}\n",
        "signature of another size": f"{text}\n\n" + bigger.split("\n\n", 1)[1],
        "no signature": text + "\n\n",
        "no blank line": text + "\n" + plain + "\n",
        "no final newline": note[:-1],
        "carriage return": note.replace("\n", "\r\n", 1),
        "control character": note.replace("example", "exa\x01mple", 1),
        "size with leading zero": note.replace("\n5\n", "\n05\n", 1),
        "size negative": note.replace("\n5\n", "\n-5\n", 1),
        "extension line": note.replace(root_b64 + "\n", root_b64 + "\nextra\n", 1),
        "root not canonical base64": note.replace(root_b64, root_b64[:-2] + "B=", 1),
        "root 31 bytes": note.replace(root_b64, base64.b64encode(bytes(31)).decode(), 1),
        "signature line without em dash": f"{text}\n\n{plain[2:]}\n",
        "signature line with two spaces": f"{text}\n\n{plain.replace(' ', '  ', 1)}\n",
        "lone surrogate": note.replace("log", "l\udc80g", 1),
    }


def _retime(line: str) -> str:
    head, b64 = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[11] ^= 1  # the last byte of the time
    return head + " " + base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("edit", sorted(_edits(sign_checkpoint(CP, KEY, time=TIME))))
def test_an_edited_checkpoint_is_refused(edit: str) -> None:
    note = _edits(sign_checkpoint(CP, KEY, time=TIME))[edit]
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, PUB)


def test_signatures_of_unknown_keys_are_ignored_but_one_bad_known_line_rejects() -> None:
    note = sign_checkpoint(CP, KEY, time=TIME)
    text = note.split("\n\n", 1)[0] + "\n"
    foreign = cps.note_signature(text, OTHER, "witness.example/w1")
    junk = "— witness.example/w2 " + base64.b64encode(b"\x01\x02\x03\x04" + bytes(64)).decode()
    assert verify_checkpoint(note + foreign + junk + "\n", PUB).checkpoint == CP
    # The same name and key ID as the ledger's, a bad signature: the whole note is refused.
    forged = f"— {ORIGIN} " + base64.b64encode(note_key_id(ORIGIN, PUB) + bytes(64)).decode()
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(note + forged + "\n", PUB)


def test_the_wrong_key_name_or_origin_is_refused() -> None:
    note = sign_checkpoint(CP, KEY, time=TIME)
    with pytest.raises(CheckpointError, match="no signature by this ledger key"):
        verify_checkpoint(note, PUB, name="example.com/other")
    with pytest.raises(CheckpointError, match="another log"):
        verify_checkpoint(note, PUB, origin="example.com/other")
    with pytest.raises(CheckpointError, match="no signature by this ledger key"):
        verify_checkpoint(note, public_key_bytes(OTHER.public_key()))
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, PUB[:31])


def test_time_is_required_unless_told_otherwise() -> None:
    text = CP.text()
    plain_only = text + "\n" + cps.note_signature(text, KEY, ORIGIN)
    with pytest.raises(CheckpointError, match="no timestamped signature"):
        verify_checkpoint(plain_only, PUB)
    assert verify_checkpoint(plain_only, PUB, require_time=False).time is None
    timed_only = text + "\n" + cps.timestamped_signature(text, KEY, ORIGIN, TIME)
    with pytest.raises(CheckpointError, match="no signature by this ledger key"):
        verify_checkpoint(timed_only, PUB)


def test_limits() -> None:
    note = sign_checkpoint(CP, KEY, time=TIME)
    line = note.split("\n\n", 1)[1].split("\n")[0] + "\n"
    with pytest.raises(CheckpointError, match="more than"):
        parse_note(note + line * cps.MAX_SIGNATURES)
    with pytest.raises(CheckpointError, match="over"):
        parse_note(("x" * (cps.MAX_NOTE_BYTES + 1)) + "\n\n" + line)
    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint("bad origin", 1, bytes(32)), KEY, time=TIME)
    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint("a+b", 1, bytes(32)), KEY, time=TIME)
    with pytest.raises(CheckpointError):
        sign_checkpoint(CP, KEY, time=-1)
    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint(ORIGIN, 2**63, bytes(32)), KEY, time=TIME)
    assert parse_checkpoint(f"{ORIGIN}\n0\n{base64.b64encode(bytes(32)).decode()}\n").size == 0
