"""C2SP signed notes and checkpoints, checked against the Go sumdb/note reference vector."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import NoteError
from ledger.keys.ed25519 import SigningKey
from ledger.log.note import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint, open_note

# golang.org/x/mod/sumdb/note, note.go package documentation and note_test.go.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_signer() -> NoteSigner:
    name, _, material = GO_SIGNER_KEY.removeprefix("PRIVATE+KEY+").partition("+")[2].partition("+")
    assert name == "c74f20a3"
    seed = base64.b64decode(material)[1:]
    return NoteSigner("PeterNeumann", SigningKey.from_seed(seed))


def test_signing_reproduces_the_go_reference_note_byte_for_byte() -> None:
    assert go_signer().sign(GO_TEXT) == GO_NOTE


def test_verifier_key_string_matches_the_go_reference() -> None:
    assert go_signer().verifier.encode() == GO_VERIFIER_KEY
    parsed = NoteVerifier.parse(GO_VERIFIER_KEY)
    assert parsed.key_id.hex() == "c74f20a3"
    assert open_note(GO_NOTE, [parsed]).body == GO_TEXT


def test_altered_body_is_refused() -> None:
    verifier = NoteVerifier.parse(GO_VERIFIER_KEY)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [verifier])


def test_signatures_from_unknown_keys_are_ignored() -> None:
    stranger = NoteSigner("witness.example/w1", SigningKey.generate())
    cosigned = GO_NOTE + stranger.sign(GO_TEXT).split("\n\n", 1)[1]
    assert open_note(cosigned, [NoteVerifier.parse(GO_VERIFIER_KEY)]).body == GO_TEXT
    with pytest.raises(NoteError, match="no signature from a trusted key"):
        open_note(GO_NOTE, [stranger.verifier])


def test_verifier_key_with_wrong_id_is_refused() -> None:
    with pytest.raises(NoteError, match="does not match"):
        NoteVerifier.parse(GO_VERIFIER_KEY.replace("c74f20a3", "c74f20a4"))


def test_checkpoint_body_format() -> None:
    checkpoint = Checkpoint("example.com/prov", 42, bytes(range(32)))
    assert checkpoint.body() == (
        "example.com/prov\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    )
    assert Checkpoint.parse_body(checkpoint.body()) == checkpoint


@given(
    origin=st.from_regex(r"[a-z0-9.]{1,20}/[a-z]{1,10}", fullmatch=True),
    size=st.integers(min_value=0, max_value=2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_checkpoint_round_trips_through_a_signed_note(origin: str, size: int, root: bytes) -> None:
    signer = NoteSigner(origin, SigningKey.from_seed(bytes(32)))
    note = signer.sign(Checkpoint(origin, size, root).body())
    assert open_checkpoint(note, signer.verifier, origin) == Checkpoint(origin, size, root)


@pytest.mark.parametrize(
    "body",
    [
        "o\n01\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",  # non-canonical size
        "o\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n1\nAAEC\n",  # root too short
        "o\n1\n",
        "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse_body(body)


def test_checkpoint_for_another_origin_is_refused() -> None:
    signer = NoteSigner("a.example/log", SigningKey.generate())
    note = signer.sign(Checkpoint("a.example/log", 1, bytes(32)).body())
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(note, signer.verifier, "b.example/log")


@given(st.text(max_size=300) | st.sampled_from([GO_NOTE, GO_NOTE[:-2], GO_NOTE + "x"]))
def test_parsers_refuse_garbage_with_note_errors_only(text: str) -> None:
    verifier = NoteVerifier.parse(GO_VERIFIER_KEY)
    for parse in (
        lambda: open_note(text, [verifier]),
        lambda: Checkpoint.parse_body(text),
        lambda: NoteVerifier.parse(text),
    ):
        # Anything but a NoteError (IndexError, UnicodeError, binascii.Error…) fails the test.
        with contextlib.suppress(NoteError):
            parse()
