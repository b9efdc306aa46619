"""Standards defects found by independent verifiers, one test (or a few) per defect.

- UCAN `prf` and `cause` hold CID links (DAG-CBOR tag 42), never byte strings of CID bytes.
- A policy statement over a selector that does not resolve never holds, `!=` and `not`
  included, as go-ucan evaluates it.
- Checkpoint and note parsing takes ASCII decimal only (no Unicode digits, sign, spaces).
- UCAN 1.0.0 is final: tokens are minted with the `@1.0.0` tags, rc.1 tokens still read.
- tlog-tiles: Cache-Control on the checkpoint, HEAD like GET, 404 for tiles that cannot exist.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import libipld
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.delegation import ucan
from ledger.delegation.chain import Rule
from ledger.delegation.policy import Outcome, evaluate, parse_policy
from ledger.delegation.policy_selector import SelectorError, parse_selector
from ledger.errors import BadRequest, NoteError, NotFound
from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log.note import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint, parse_note
from ledger.log.receipt import Receipt
from ledger.storage.db import make_engine
from query.routes.tiles import parse_tile_path
from tests.http_server import Server
from tests.support import demo_envelopes
from tests.test_delegation_chain import broken, build, verify
from tests.test_ucan import SPEC_DELEGATION as RC1_DELEGATION
from tests.test_ucan import SPEC_POLICY_INVOCATION as RC1_INVOCATION


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


# --- 2. UCAN links --------------------------------------------------------------------------


def _reseal(token: bytes, key: Ed25519PrivateKey, edit: Callable[[bytes], bytes]) -> bytes:
    """The token with its signed bytes changed by `edit`, signed again by `key`."""
    signed = edit(token[67:])
    return b"\x82\x58\x40" + key.sign(signed) + signed


def _unlink(cid: bytes) -> Callable[[bytes], bytes]:
    """An edit that writes `cid` as a plain byte string where it was a tag-42 link."""
    link = b"\xd8\x2a\x58\x25\x00" + cid  # tag 42, bytes(37), the identity multibase 0x00
    plain = b"\x58\x24" + cid  # bytes(36): the same CID bytes, no tag

    def edit(signed: bytes) -> bytes:
        assert link in signed
        return signed.replace(link, plain)

    return edit


def _invocation(key: Ed25519PrivateKey, **fields: Any) -> bytes:
    payload = {
        "iss": ucan.did_of(key),
        "sub": ucan.did_of(key),
        "cmd": "/loan/approve",
        "args": {},
        "prf": [],
        "nonce": ucan.derived_nonce(b"standards-defects"),
        "exp": None,
    } | fields
    signed = libipld.encode_dag_cbor(
        {"h": ucan.VARSIG_ED25519_DAG_CBOR, ucan.INVOCATION_TAG: payload}
    )
    return b"\x82\x58\x40" + key.sign(signed) + signed


def test_prf_holding_byte_strings_is_refused_and_names_rule_one() -> None:
    chain = build(2, prefix="prf-bytes")
    invoker = chain.keys[-1]
    forged = _reseal(chain.invocation, invoker, _unlink(ucan.cid_of(chain.tokens[0])))
    # Same signer, same decoded value: only the CBOR major type of prf[0] differs.
    with pytest.raises(ucan.TokenInvalid, match=r"prf\[0\] is a byte string, not a CID link"):
        ucan.decode_invocation(forged)
    chain.invocation = forged
    rule, pointer, detail = broken(verify(chain))
    assert (rule, pointer) == (Rule.SIGNATURE, "/invocation")
    assert "prf[0]" in detail
    assert "tag 42" in detail


def test_cause_must_be_a_link_or_null() -> None:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"cause").digest())
    cid = ucan.cid_of(b"an earlier receipt")
    linked = _invocation(key, cause=cid)  # libipld writes CID bytes as a link
    assert ucan.decode_invocation(linked).cause == cid
    assert ucan.decode_invocation(_invocation(key, cause=None)).cause is None
    with pytest.raises(ucan.TokenInvalid, match="cause is not a CID link"):
        ucan.decode_invocation(_reseal(linked, key, _unlink(cid)))


def test_revoke_argument_must_be_a_link_and_a_nonce_must_not_be_one() -> None:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"revoker").digest())
    delegation = ucan.delegate(key, ucan.did_of(key), ucan.did_of(key), "/loan", [], None)
    revocation = ucan.revoke(key, delegation, issued_at=1_800_000_000)
    assert ucan.decode_invocation(revocation).args["revoke"] == ucan.cid_of(delegation)
    with pytest.raises(ucan.TokenInvalid, match=r"args\.revoke is not a CID link"):
        ucan.decode_invocation(_reseal(revocation, key, _unlink(ucan.cid_of(delegation))))
    # Outside a revocation, args may hold any bytes.
    plain_args = _reseal(
        _invocation(key, args={"blob": ucan.cid_of(b"x")}), key, _unlink(ucan.cid_of(b"x"))
    )
    assert ucan.decode_invocation(plain_args).args == {"blob": ucan.cid_of(b"x")}
    # A nonce of CID bytes is written as a link by DAG-CBOR: not the byte string it must be.
    with pytest.raises(ucan.TokenInvalid, match="nonce is a CID link"):
        ucan.decode_invocation(_invocation(key, nonce=ucan.cid_of(b"nonce")))


def test_chains_with_links_still_verify() -> None:
    assert verify(build(3, prefix="links-ok"))


# --- 3. Policy "!=" over a selector that does not resolve -------------------------------------


@pytest.mark.parametrize(
    ("statement", "args"),
    [
        (["!=", ".a.b", 1], {"a": 1}),  # selecting into a number
        (["!=", ".v[5]", 1], {"v": [1]}),  # an index past the end
        (["!=", ".a.b", None], {}),  # into the null of a missing key
        (["not", ["==", ".a.b", 1]], {"a": 1}),
        (["not", ["<", ".a.b", 1]], {"a": "x"}),
        (["not", ["like", ".a[0]", "x*"]], {"a": {}}),
        (["not", ["any", ".a.b", ["==", ".", 1]]], {"a": 2}),
        (["not", ["not", ["not", ["==", ".a[9]", 1]]]], {"a": []}),
        (["not", ["and", [["==", ".a.b", 1]]]], {"a": 0}),
    ],
)
def test_a_statement_over_an_unresolved_selector_never_holds(
    statement: list[Any], args: dict[str, Any]
) -> None:
    assert not evaluate([statement], args)
    assert parse_policy([statement]).statements[0].outcome(args) is Outcome.UNRESOLVED


def test_resolved_inequalities_and_the_spec_null_for_missing_keys() -> None:
    assert evaluate([["!=", ".a", 1]], {"a": 2})
    assert not evaluate([["!=", ".a", 1]], {"a": 1})
    assert evaluate([["not", ["==", ".a", 1]]], {"a": 2})
    # The spec: a missing key selects null, which is resolved and not 1.
    assert evaluate([["!=", ".a", 1]], {})
    assert evaluate([["!=", ".a?.b", 1]], {"a": None}) is False


def test_connectives_stop_at_the_first_unresolved_statement_as_go_ucan() -> None:
    args = {"a": 1}
    unresolved, true, false = ["==", ".a.b", 1], ["==", ".a", 1], ["==", ".a", 2]
    assert evaluate([["or", [true, unresolved]]], args)
    assert not evaluate([["or", [unresolved, true]]], args)
    assert not evaluate([["not", ["and", [unresolved, false]]]], args)
    assert evaluate([["not", ["and", [false, unresolved]]]], args)
    assert not evaluate([["all", ".v", ["!=", ".x.y", 0]]], {"v": [{"x": 1}]})
    assert evaluate([["all", ".v", ["!=", ".x.y", 0]]], {"v": []})


def test_a_chain_whose_policy_forbids_an_unselectable_value_is_refused() -> None:
    def policy(position: int, arguments: dict[str, Any]) -> None:
        if position == 1:
            arguments["policy"] = [["!=", ".limits.override", True]]

    arguments = {"amount": 12_000, "limits": 5}
    chain = build(2, edit=policy, invoke=lambda call: call.update(args=arguments))
    rule, pointer, detail = broken(verify(chain))
    assert (rule, pointer) == (Rule.POLICY, "/delegation/1")
    assert '["!=",".limits.override",true]' in detail.replace(", ", ",")


# --- 4. ASCII decimal in checkpoints, notes, tiles and selectors ------------------------------

SIGNER = NoteSigner("example.com/log", SigningKey.from_seed(bytes(range(32))))
ROOT = base64.b64encode(hashlib.sha256(b"root").digest()).decode()


def _checkpoint(size: str, extra: str = "") -> str:
    return SIGNER.sign(f"example.com/log\n{size}\n{ROOT}\n{extra}")


@pytest.mark.parametrize(
    "size",
    [
        "\u0661\u0662",  # ARABIC-INDIC 12: str.isdigit() and int() take it
        "\uff15",  # FULLWIDTH 5
        "\u00b2",  # SUPERSCRIPT 2: isdigit() but int() raises
        "+5",
        "5_0",
        " 5",
        "05",
        "00",
        "18446744073709551616",  # 2**64
        "9" * 5000,  # more digits than int() converts
    ],
)
def test_checkpoint_sizes_are_ascii_decimal_uint64(size: str) -> None:
    with pytest.raises(NoteError, match="checkpoint size"):
        open_checkpoint(_checkpoint(size), SIGNER.verifier)


def test_canonical_checkpoint_sizes_still_read() -> None:
    for size in (0, 7, 2**64 - 1):
        assert open_checkpoint(_checkpoint(str(size)), SIGNER.verifier).size == size
    assert Checkpoint.parse_body(f"o\n12\n{ROOT}\next\n").size == 12
    with pytest.raises(NoteError, match="extension lines"):
        open_checkpoint(_checkpoint("12", extra="\nextension\n"), SIGNER.verifier)


def test_notes_refuse_control_characters_and_malformed_key_names() -> None:
    with pytest.raises(NoteError, match="control character"):
        parse_note(SIGNER.sign("a\rb\n"))
    note = SIGNER.sign("text\n")
    with pytest.raises(NoteError, match="key name"):
        parse_note(note.replace("example.com/log ", "example.com+log "))


def test_verifier_key_ids_are_eight_lowercase_hex_digits() -> None:
    name, key_id, key = SIGNER.verifier.encode().split("+", 2)
    assert NoteVerifier.parse(f"{name}+{key_id}+{key}") == SIGNER.verifier
    for spelled in (key_id.upper(), f"{key_id[:2]} {key_id[2:]}", f" {key_id}", key_id[:6]):
        assert spelled != key_id
        with pytest.raises(NoteError, match="key id"):
            NoteVerifier.parse(f"{name}+{spelled}+{key}")


@pytest.mark.parametrize("path", ["0/\u0660\u0660\u0661", "\u0660/000", "0/000.p/\u0668"])
def test_tile_paths_are_ascii(path: str) -> None:
    with pytest.raises(BadRequest):
        parse_tile_path(path)


def test_a_tile_index_of_thousands_of_digits_is_absent_not_a_crash() -> None:
    with pytest.raises(NotFound):
        parse_tile_path("0/" + "x123/" * 2000 + "000")


@pytest.mark.parametrize("selector", [".[\u0661]", ".a[\u0661:\u0662]", ".[" + "9" * 5000 + "]"])
def test_selector_indexes_are_ascii_and_bounded(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(selector)


# --- 5. UCAN 1.0.0 tags -----------------------------------------------------------------------

# ucan-wg/spec fixtures/1.0.0/delegation.json after "Bump to v1.0.0 (drop RC.X)".
SPEC_DELEGATION = _b64(
    "glhAjm4YpBUWgEVmBWSotkY7bjWxj9AJLs9NfQykfoF2LhKZ76lQH0B720Qq0/YxNu+dKuQLEzlfJvmYRnZGgI7dA6Jh"
    "aEg0Ae0B7QETcW51Y2FuL2RsZ0AxLjAuMKdjYXVkeDhkaWQ6a2V5Ono2TWttSmNlVm9RU0hzNDVjUmVFWG9MdFdtMXdv"
    "c0NHOFJMeGZLd2h4b3F6b1RrQ2NjbWRoL2FjY291bnRjZXhwGmiCDLFjaXNzeDhkaWQ6a2V5Ono2TWttVDlqNmZWWnF6"
    "WFY4dTJ3VlZTdTQ5Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemNwb2yAY3N1Yng4ZGlkOmtleTp6Nk1rbVQ5ajZmVlpxelhW"
    "OHUyd1ZWU3U0OWdZU1JZR1NRbmR1V1hGNmZvQUpycXplbm9uY2VMJ20r9pHkJ/yoNirD"
)
SPEC_DELEGATION_CID = "bafyreigyftnzjf4rcu7glp5kfop53vqlopc3zcldauoqdxqlz7t4343gr4"
# fixtures/1.0.0/invocation.json, "policy match": the proof, then the invocation.
SPEC_POLICY_DELEGATION = _b64(
    "glhAt8XWvFrpv+BPo3LP2340PKQYSuXnWHHtOZ+zGu0+DTNodSxX4AuEhc5Ity6G+ZBXbGg6eLesC2tbfTuL9iI4C6Jh"
    "aEg0Ae0B7QETcW51Y2FuL2RsZ0AxLjAuMKdjYXVkeDhkaWQ6a2V5Ono2TWtnR3lrTjlBUk5GakV6b3dWcTRtTFAya0w0"
    "TnN5QWFER1hlSkZRNXFFMWJmZ2NjbWRpL21zZy9zZW5kY2V4cPZjaXNzeDhkaWQ6a2V5Ono2TWttVDlqNmZWWnF6WFY4"
    "dTJ3VlZTdTQ5Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemNwb2yBg2I9PWcuYW5zd2VyGCpjc3VieDhkaWQ6a2V5Ono2TWtt"
    "VDlqNmZWWnF6WFY4dTJ3VlZTdTQ5Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemVub25jZVABAgMEAQIDBAECAwQBAgME"
)
SPEC_POLICY_INVOCATION = _b64(
    "glhAxxudQjI14jtsvhCZYWhboPhTKd3/gCssKL1cEDaYzFGUeNPGeRli9kqh8Qz7MJgQmbVAxHNeaYBRHKBIh3WaBqJh"
    "aEg0Ae0B7QETcW51Y2FuL2ludkAxLjAuMKhjY21kaS9tc2cvc2VuZGNleHD2Y2lhdBpo9XuAY2lzc3g4ZGlkOmtleTp6"
    "Nk1rZ0d5a045QVJORmpFem93VnE0bUxQMmtMNE5zeUFhREdYZUpGUTVxRTFiZmdjcHJmgdgqWCUAAXESIK74E2GI9IUv"
    "rRh8UYahMaBwJw1hg8duKDEHlARkYCY4Y3N1Yng4ZGlkOmtleTp6Nk1rbVQ5ajZmVlpxelhWOHUyd1ZWU3U0OWdZU1JZ"
    "R1NRbmR1V1hGNmZvQUpycXpkYXJnc6FmYW5zd2VyGCplbm9uY2VQBQYHCAUGBwgFBgcIBQYHCA"
)
# The principals of delegation.json: base64(varint 0x1300 || Ed25519 private key).
BOB = Ed25519PrivateKey.from_private_bytes(
    _b64("gCZfj9+RzU2U518TMBNK/fjdGQz34sB4iKE6z+9lQDpCIQ==")[2:]
)
ALICE = Ed25519PrivateKey.from_private_bytes(
    _b64("gCa9UfZv+yI5/rvUIt21DaGI7EZJlzFO1uDc5AyJ30c6/w==")[2:]
)


def test_minting_writes_the_final_tags() -> None:
    assert (ucan.DELEGATION_TAG, ucan.INVOCATION_TAG) == ("ucan/dlg@1.0.0", "ucan/inv@1.0.0")
    token = ucan.delegate(BOB, ucan.did_of(ALICE), ucan.did_of(BOB), "/", [], None)
    assert b"ucan/dlg@1.0.0\xa7" in token
    assert b"rc.1" not in token


def test_the_1_0_0_fixtures_are_reproduced_byte_for_byte() -> None:
    spec = ucan.decode_delegation(SPEC_DELEGATION)
    assert ucan.signature_valid(spec)
    assert ucan.cid_text(spec.cid) == SPEC_DELEGATION_CID
    assert ucan.did_of(BOB) == spec.iss
    made = ucan.delegate(BOB, spec.aud, spec.sub or "", spec.cmd, spec.pol, spec.exp, spec.nonce)
    assert made == SPEC_DELEGATION

    proof = ucan.decode_delegation(SPEC_POLICY_DELEGATION)
    invocation = ucan.decode_invocation(SPEC_POLICY_INVOCATION)
    assert ucan.signature_valid(proof)
    assert ucan.signature_valid(invocation)
    assert invocation.prf == [proof.cid]
    assert evaluate(proof.pol, invocation.args)
    reminted = ucan.invoke(
        ALICE,
        invocation.sub,
        invocation.cmd,
        invocation.args,
        [SPEC_POLICY_DELEGATION],
        expiration=invocation.exp,
        nonce=invocation.nonce,
        issued_at=invocation.iat,
    )
    assert reminted == SPEC_POLICY_INVOCATION


def test_rc1_tokens_still_read() -> None:
    assert b"ucan/dlg@1.0.0-rc.1" in RC1_DELEGATION
    assert ucan.signature_valid(ucan.decode_delegation(RC1_DELEGATION))
    assert ucan.signature_valid(ucan.decode_invocation(RC1_INVOCATION))


# --- 6. tlog-tiles over HTTP ------------------------------------------------------------------


def test_checkpoint_and_tiles_follow_tlog_tiles(server: Server) -> None:
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    records = demo_envelopes(ledger.engine, 260, seed=7)
    assert all(isinstance(r, Receipt) for r in ledger.append(records))
    ledger.close()
    audit = server.auth(server.api_key("audit"))
    with httpx.Client(base_url=server.url, headers=audit, timeout=30) as client:
        for path in ("/checkpoint", "/v1/checkpoint"):
            got = client.get(path)
            assert got.status_code == 200
            assert got.headers["content-type"] == "text/plain; charset=utf-8"
            assert got.headers["cache-control"] == "no-cache"
            assert got.text.splitlines()[1] == "260"
            head = client.head(path)
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["content-length"] == str(len(got.content))
            assert head.headers["cache-control"] == "no-cache"

        for path, cache in (
            ("/tile/0/000", "immutable"),
            ("/tile/entries/000", "immutable"),
            ("/tile/0/001.p/4", "no-cache"),
            ("/tile/1/000.p/1", "no-cache"),
        ):
            got, head = client.get(path), client.head(path)
            assert (got.status_code, head.status_code, head.content) == (200, 200, b"")
            assert cache in got.headers["cache-control"]
            assert head.headers["cache-control"] == got.headers["cache-control"]
            assert head.headers["content-length"] == str(len(got.content))
        assert client.get("/tile/0/000").headers["cache-control"] == (
            "public, max-age=31536000, immutable"
        )

        # Levels 8 to 63 are well-formed paths to tiles no 64-bit log has: 404, not 400.
        for path in ("/tile/8/000", "/tile/63/x001/000", "/tile/0/001", "/tile/0/001.p/5"):
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["type"] == "urn:prov:problem:not-found"
            assert client.head(path).status_code == 404
        for path in ("/tile/64/000", "/tile/08/000", "/tile/0/\u0661\u0662\u0663"):
            assert client.get(path).status_code == 400, path
