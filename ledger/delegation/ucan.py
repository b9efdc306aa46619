"""UCAN 1.0 tokens in this ledger's profile: did:key, DAG-CBOR envelopes, CIDs and commands.

The profile of ucan-wg/spec, ucan-wg/delegation and ucan-wg/invocation (v1.0.0) that decision
records use:

- Principals are did:key identifiers of Ed25519 keys, and nothing else.
- A token is the DAG-CBOR array ``[signature, {"h": varsig header, tag: payload}]``, and
  the signature is Ed25519 over the exact bytes of the second element. A token is kept as
  the bytes it arrived as: nothing here re-encodes one to check it, so a signature and a CID
  always cover what was sent. DAG-CBOR is libipld's (a maintained Rust codec), whose strict
  decoder refuses what would let two readers see different values under one signature
  (unsorted or repeated keys, indefinite lengths, tags other than CIDs, NaN).
- A token's CID is CIDv1, DAG-CBOR, SHA2-256 of its bytes.
- Minting writes the payload tags of UCAN 1.0.0 and of the spec's published fixtures,
  ``ucan/dlg@1.0.0`` and ``ucan/inv@1.0.0``, so that the fixtures are reproduced byte for
  byte; decoding also accepts the ``@1.0.0-rc.1`` tags that tokens minted before 1.0.0 carry.
- Links are links: libipld decodes a CID link (tag 42) and a byte string alike as bytes, so
  the payload's own bytes are read to require that `prf` and `cause` (and a revocation's
  ``args.revoke``) hold tag-42 links and a nonce a byte string, as the spec's schemas say.
- This profile never mints a null `sub` (the spec's "powerline"); chain verification
  (`ledger.delegation.chain`) refuses one too.

Sources: ucan-wg/spec (README "Envelope"; fixtures/1.0.0), ucan-wg/delegation and
ucan-wg/invocation (the payload tables), ChainAgnostic/varsig, multiformats (CID, multibase).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

import libipld
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.delegation.policy import parse_policy
from ledger.errors import ProvError
from ledger.keys import ed25519 as _ed25519

DELEGATION_TAG = "ucan/dlg@1.0.0"
INVOCATION_TAG = "ucan/inv@1.0.0"
# Tokens minted before UCAN 1.0.0 was final (by this ledger too) carry the rc.1 tags.
_DELEGATION_TAGS = frozenset({DELEGATION_TAG, "ucan/dlg@1.0.0-rc.1"})
_INVOCATION_TAGS = frozenset({INVOCATION_TAG, "ucan/inv@1.0.0-rc.1"})
REVOKE_COMMAND = "/ucan/revoke"

# Varsig v1 header for Ed25519 over DAG-CBOR: prefix 0x34, version 0x01, EdDSA 0xed and
# curve edwards25519 0xed (each the varint ed 01), hash SHA2-512 0x13, payload DAG-CBOR 0x71.
# This is "NAHtAe0BE3E" in ucan-wg/spec's envelope example and in every fixture token.
VARSIG_ED25519_DAG_CBOR = bytes.fromhex("3401ed01ed011371")

# A DAG-CBOR array of two, then a 64-byte byte string: shortest form is the only form, so
# every token starts with these bytes and its signed part starts 67 bytes in.
_ENVELOPE_HEAD = b"\x82\x58\x40"
_SIGNED_AT = len(_ENVELOPE_HEAD) + _ed25519.SIGNATURE_SIZE
_DID_KEY_PREFIX = "did:key:z"  # "z" is the multibase code of base58btc
_ED25519_PUB = b"\xed\x01"  # multicodec ed25519-pub, as a varint
_CID_HEAD = b"\x01\x71\x12\x20"  # CIDv1, dag-cbor, sha2-256, 32 bytes
NONCE_SIZE = 12  # the spec's recommendation for Ed25519
MAX_NONCE_SIZE = 64  # nonces are indexed for replay checks, so they are bounded

# UCAN times are integer seconds within the range a JavaScript number holds exactly.
UnixTime = Annotated[int, msgspec.Meta(ge=-(2**53 - 1), le=2**53 - 1)]
Nonce = Annotated[bytes, msgspec.Meta(max_length=MAX_NONCE_SIZE)]


class TokenInvalid(ProvError, ValueError):
    """Bytes that are not a well-formed token of this profile."""

    kind = "bad-token"
    title = "Malformed UCAN token"


class DelegationPayload(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The fields of a delegation payload, named as in the specification."""

    iss: str
    aud: str
    sub: str | None  # null only for the spec's "powerline", which this profile refuses
    cmd: str
    pol: list[Any]
    nonce: Nonce
    meta: dict[str, Any] | None = None
    nbf: UnixTime | None = None
    exp: UnixTime | None  # required, but null means "never expires"


class InvocationPayload(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The fields of an invocation payload, named as in the specification."""

    iss: str
    sub: str
    aud: str | None = None
    cmd: str
    args: dict[str, Any]
    prf: list[bytes]  # CIDs of the delegations, root first
    nonce: Nonce
    meta: dict[str, Any] | None = None
    exp: UnixTime | None
    iat: UnixTime | None = None
    cause: bytes | None = None


class Delegation(DelegationPayload, kw_only=True, frozen=True):
    """A decoded delegation: the payload, its signature, the bytes signed and its CID."""

    signature: bytes
    signed: bytes
    cid: bytes


class Invocation(InvocationPayload, kw_only=True, frozen=True):
    """A decoded invocation: the payload, its signature, the bytes signed and its CID."""

    signature: bytes
    signed: bytes
    cid: bytes


# --- did:key and CIDs ----------------------------------------------------------------------


def did_key(public_key: bytes) -> str:
    """The did:key of a raw 32-byte Ed25519 public key."""
    if len(public_key) != _ed25519.PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return "did:key:" + libipld.encode_multibase("z", _ED25519_PUB + public_key)


def did_of(key: Ed25519PrivateKey) -> str:
    """The did:key of a private key's public half."""
    return did_key(key.public_key().public_bytes_raw())


@functools.lru_cache(maxsize=8192)
def public_key_from_did(did: str) -> bytes:
    """The raw Ed25519 public key a did:key names; ValueError for any other DID."""
    if not did.startswith(_DID_KEY_PREFIX):
        raise ValueError(f"not a base58btc did:key: {did!r}")
    try:
        _, decoded = libipld.decode_multibase(did.removeprefix("did:key:"))
    except ValueError:
        raise ValueError(f"not base58btc digits: {did!r}") from None
    if len(decoded) != 2 + _ed25519.PUBLIC_KEY_SIZE or not decoded.startswith(_ED25519_PUB):
        raise ValueError(f"not an Ed25519 did:key: {did!r}")
    return decoded[2:]


def cid_of(token: bytes) -> bytes:
    """The binary CIDv1 (dag-cbor, sha2-256) of a token's bytes."""
    return _CID_HEAD + hashlib.sha256(token).digest()


def cid_text(cid: bytes) -> str:
    """A binary CID in its usual text form, base32 with the "b" prefix (``bafyrei…``)."""
    return libipld.encode_cid(cid)


# --- Commands ------------------------------------------------------------------------------


def check_command(command: str) -> None:
    """Commands are lowercase paths beginning with "/"; only "/" itself ends with one."""
    if not command.startswith("/") or command != command.lower():
        raise ValueError(f"a command is a lowercase path starting with '/': {command!r}")
    if len(command) > 1 and (command.endswith("/") or "//" in command):
        raise ValueError(f"a command has no empty segments: {command!r}")


def covers(granted: str, wanted: str) -> bool:
    """Whether authority over `granted` covers `wanted`: the same command or one below it,
    at a segment boundary (``/crypto`` covers ``/crypto/sign`` but not ``/cryptocurrency``)."""
    return granted in ("/", wanted) or wanted.startswith(granted + "/")


# --- Minting -------------------------------------------------------------------------------


def _encodes_as_link(value: bytes) -> bool:
    # libipld writes bytes that parse as a CID as a CID (tag 42); a nonce must stay bytes.
    return libipld.encode_dag_cbor(value)[0] == 0xD8


def fresh_nonce() -> bytes:
    """A random nonce of the recommended size that DAG-CBOR keeps as bytes."""
    while _encodes_as_link(nonce := os.urandom(NONCE_SIZE)):
        pass
    return nonce


def derived_nonce(seed: bytes) -> bytes:
    """A nonce derived from `seed`, for tokens that must come out the same every time
    (demo data, test vectors); the seed must be unique to the token."""
    nonce = hashlib.sha256(seed).digest()[:NONCE_SIZE]
    while _encodes_as_link(nonce):
        nonce = hashlib.sha256(nonce).digest()[:NONCE_SIZE]
    return nonce


def _checked_nonce(nonce: bytes | None) -> bytes:
    if nonce is None:
        return fresh_nonce()
    if len(nonce) > MAX_NONCE_SIZE or _encodes_as_link(nonce):
        raise ValueError("a nonce is at most 64 bytes that do not read as a CID")
    return nonce


def _seal(key: Ed25519PrivateKey, tag: str, payload: dict[str, Any]) -> bytes:
    signed = libipld.encode_dag_cbor({"h": VARSIG_ED25519_DAG_CBOR, tag: payload})
    return _ENVELOPE_HEAD + key.sign(signed) + signed


def delegate(
    issuer: Ed25519PrivateKey,
    audience: str,
    subject: str,
    command: str,
    policy: list[Any],
    expiration: int | None,
    nonce: bytes | None = None,
    not_before: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """A signed delegation token from the issuer to `audience`, about `subject`.

    Times are Unix seconds; `expiration` None is the spec's "never expires". The policy is
    checked to parse, so a token this ledger would refuse is never made.
    """
    check_command(command)
    parse_policy(policy)
    payload: dict[str, Any] = {
        "iss": did_of(issuer),
        "aud": audience,
        "sub": subject,
        "cmd": command,
        "pol": policy,
        "nonce": _checked_nonce(nonce),
        "exp": expiration,
    }
    if meta is not None:
        payload["meta"] = dict(meta)
    if not_before is not None:
        payload["nbf"] = not_before
    return _seal(issuer, DELEGATION_TAG, payload)


def invoke(
    invoker: Ed25519PrivateKey,
    subject: str,
    command: str,
    args: Mapping[str, Any],
    proofs: Sequence[bytes],
    *,
    expiration: int | None,
    nonce: bytes | None = None,
    issued_at: int | None = None,
    audience: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """A signed invocation of `command` on `subject`, proved by the delegation tokens
    `proofs` (root first), whose CIDs it lists in `prf`."""
    check_command(command)
    payload: dict[str, Any] = {
        "iss": did_of(invoker),
        "sub": subject,
        "cmd": command,
        "args": dict(args),
        "prf": [cid_of(token) for token in proofs],
        "nonce": _checked_nonce(nonce),
        "exp": expiration,
    }
    optional = {"aud": audience, "iat": issued_at, "meta": None if meta is None else dict(meta)}
    payload |= {name: value for name, value in optional.items() if value is not None}
    return _seal(invoker, INVOCATION_TAG, payload)


def revoke(revoker: Ed25519PrivateKey, delegation: bytes, *, issued_at: int | None) -> bytes:
    """The revocation of a delegation (ucan-wg/revocation): an invocation of ``/ucan/revoke``
    by the delegation's issuer, naming it by CID. Revoking is idempotent, so, as the spec
    asks, the nonce is empty."""
    revoked = decode_delegation(delegation)
    if revoked.sub is None:
        raise ValueError("this profile has no powerline delegations to revoke")
    return invoke(
        revoker,
        revoked.sub,
        REVOKE_COMMAND,
        {"revoke": cid_of(delegation)},
        [],
        expiration=None,
        nonce=b"",
        issued_at=issued_at,
    )


# --- Links in a payload's bytes ------------------------------------------------------------
# libipld gives a CID link and a byte string holding the same bytes as the same Python bytes,
# so whether a field holds a link is read from the token itself. These run only after
# libipld's strict decoder accepted the bytes: every length is definite and in bounds.

_LINK = b"\xd8\x2a"  # CBOR tag 42, the only tag DAG-CBOR allows
_NULL = 0xF6
_BYTES, _TEXT, _ARRAY, _MAP, _TAG = 2, 3, 4, 5, 6


def _head(data: bytes, at: int) -> tuple[int, int, int]:
    """The major type, the argument and the end of the CBOR item head at `at`."""
    major, info = data[at] >> 5, data[at] & 0x1F
    if info < 24:
        return major, info, at + 1
    size = 1 << (info - 24)  # 24 to 27: a 1, 2, 4 or 8-byte argument
    return major, int.from_bytes(data[at + 1 : at + 1 + size], "big"), at + 1 + size


def _skip(data: bytes, at: int) -> int:
    """Where the CBOR item at `at` ends; a loop, so that nesting costs no stack."""
    pending = 1
    while pending:
        major, argument, at = _head(data, at)
        pending -= 1
        if major in (_BYTES, _TEXT):
            at += argument
        elif major == _ARRAY:
            pending += argument
        elif major == _MAP:
            pending += 2 * argument
        elif major == _TAG:
            pending += 1
    return at


def _members(data: bytes, at: int) -> dict[str, int]:
    """Where each member's value starts in the map at `at` (DAG-CBOR keys are text)."""
    major, count, at = _head(data, at)
    members: dict[str, int] = {}
    if major != _MAP:
        return members
    for _ in range(count):
        _, length, key_at = _head(data, at)
        members[data[key_at : key_at + length].decode()] = key_at + length
        at = _skip(data, key_at + length)
    return members


def _is_link(data: bytes, at: int) -> bool:
    return data.startswith(_LINK, at)


def _check_links(signed: bytes, tag: str, invocation: bool, revocation: bool = False) -> None:
    """Refuse a payload whose links are byte strings, or whose nonce is a link: two
    readers of the same signed bytes must agree on what each field is."""
    fields = _members(signed, _members(signed, 0)[tag])
    if "nonce" in fields and _is_link(signed, fields["nonce"]):
        raise TokenInvalid("nonce is a CID link; the spec makes it a byte string")
    if not invocation:
        return
    if "prf" in fields:
        _, count, at = _head(signed, fields["prf"])  # an array: the payload was converted
        for position in range(count):
            if not _is_link(signed, at):
                raise TokenInvalid(
                    f"prf[{position}] is a byte string, not a CID link (DAG-CBOR tag 42); "
                    "prf must hold links"
                )
            at = _skip(signed, at)
    cause = fields.get("cause")
    if cause is not None and signed[cause] != _NULL and not _is_link(signed, cause):
        raise TokenInvalid("cause is not a CID link (DAG-CBOR tag 42); it must be a link or null")
    revoked = _members(signed, fields["args"]).get("revoke") if revocation else None
    if revoked is not None and not _is_link(signed, revoked):
        raise TokenInvalid("args.revoke is not a CID link (DAG-CBOR tag 42)")


# --- Decoding ------------------------------------------------------------------------------


def _open(token: bytes, tags: frozenset[str]) -> tuple[bytes, bytes, str, dict[str, Any]]:
    """The signature, the signed bytes, the payload's tag and the payload map of a token."""
    if len(token) <= _SIGNED_AT or not token.startswith(_ENVELOPE_HEAD):
        raise TokenInvalid("not a [64-byte signature, payload] DAG-CBOR envelope")
    signed = token[_SIGNED_AT:]
    try:
        body = libipld.decode_dag_cbor(signed)
    except (ValueError, RecursionError) as error:
        raise TokenInvalid(f"not DAG-CBOR: {error}") from None
    match body:
        case {"h": bytes() as header, **tagged} if len(tagged) == 1:
            [(tag, payload)] = tagged.items()
        case _:
            raise TokenInvalid("the signed part is not {h, payload}")
    if header != VARSIG_ED25519_DAG_CBOR:
        raise TokenInvalid("not signed with Ed25519 over DAG-CBOR")
    if tag not in tags:
        raise TokenInvalid(f"the payload is tagged {tag!r}, not one of {sorted(tags)}")
    if not isinstance(payload, dict):
        raise TokenInvalid("the payload is not a map")
    return token[len(_ENVELOPE_HEAD) : _SIGNED_AT], signed, tag, payload


_P = TypeVar("_P", DelegationPayload, InvocationPayload)


def _convert(payload: dict[str, Any], kind: type[_P]) -> _P:
    try:
        # bytes stay bytes: without this a text nonce would be read as base64.
        return msgspec.convert(payload, kind, builtin_types=(bytes,))
    except msgspec.ValidationError as error:
        raise TokenInvalid(f"payload: {error}") from None


@functools.lru_cache(maxsize=4096)
def decode_delegation(token: bytes) -> Delegation:
    """Decode a delegation token; its signature is checked by `signature_valid`.

    Cached: a chain is shared by many records, and a token's bytes determine the result.
    """
    signature, signed, tag, payload = _open(token, _DELEGATION_TAGS)
    fields = msgspec.structs.asdict(_convert(payload, DelegationPayload))
    _check_links(signed, tag, invocation=False)
    return Delegation(**fields, signature=signature, signed=signed, cid=cid_of(token))


def decode_invocation(token: bytes) -> Invocation:
    """Decode an invocation token; its signature is checked by `signature_valid`."""
    signature, signed, tag, payload = _open(token, _INVOCATION_TAGS)
    fields = msgspec.structs.asdict(_convert(payload, InvocationPayload))
    _check_links(signed, tag, invocation=True, revocation=fields["cmd"] == REVOKE_COMMAND)
    return Invocation(**fields, signature=signature, signed=signed, cid=cid_of(token))


def signature_valid(token: Delegation | Invocation) -> bool:
    """Whether the token is signed by the key its issuer's did:key names."""
    try:
        public_key = public_key_from_did(token.iss)
    except ValueError:
        return False
    return _ed25519.verify(public_key, token.signed, token.signature)
