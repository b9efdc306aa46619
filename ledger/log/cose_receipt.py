"""COSE receipts (RFC 9942): the ledger's signed statement that an entry is in its log, in
the form SCITT transparency services and their verifiers read.

A receipt is a COSE_Sign1 (RFC 9052, CBOR tag 18) signed with the ledger key (Ed25519, the
key that signs checkpoints), in the RFC9162_SHA256 profile of RFC 9942:

    protected    {1: -8 (EdDSA), 4: kid, 15: {1: iss, 2: sub}, 395: 1 (RFC9162_SHA256)}
    unprotected  {396: {-1: [bstr .cbor [tree_size, leaf_index, [hash, ...]]]}}
    payload      nil (detached): the root of the tree of `tree_size` entries
    signature    Ed25519 over ["Signature1", protected, h'', root]

`kid` is the ledger key's 4-byte note key id (`ledger.log.note.key_id`), the one its
checkpoint signature lines carry; `iss` is the log's origin, the name of its checkpoints;
`sub` is `<origin>/entries/<index>`, the entry the receipt is about. The proof is the
RFC 9162 inclusion proof of the entry's leaf hash, `SHA-256(0x00 || entry bytes)`, in the
tree of a stored signed checkpoint, so the root a verifier rebuilds is that checkpoint's.
Everything is deterministic CBOR (RFC 8949 §4.2) and Ed25519 is deterministic, so the
receipt for one entry and one checkpoint is always the same bytes.

The tree size and the index in the proof are outside the signature, as RFC 9942 has it; the
signature covers the root they lead to. This verifier binds the index through the signed
`sub`, and through the index the entry bytes carry; the size is bound by comparing the root
with the signed checkpoint of that size, when the caller gives one.

Clients import this module (no SQLAlchemy); issuing from the stored log is
`query.audit.cose_receipts`. docs/log-format.md, "COSE receipts (RFC 9942)", is the profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import CoseReceiptInvalid, EntryAltered
from ledger.keys import ed25519 as _ed25519
from ledger.log import merkle
from ledger.log.entry import ENTRY_HEAD, MAGIC
from ledger.log.note import MAX_TREE_SIZE, Checkpoint, NoteSigner, NoteVerifier

COSE_MEDIA_TYPE = "application/cose"
COSE_SIGN1_TAG = 18

# COSE header labels (RFC 9052 §3.1, RFC 9597, RFC 9942 §2) and the values this profile uses.
HDR_ALG = 1
HDR_KID = 4
HDR_CWT_CLAIMS = 15
HDR_VDS = 395
HDR_VDP = 396
ALG_EDDSA = -8
VDS_RFC9162_SHA256 = 1
VDP_INCLUSION_PROOFS = -1
CWT_ISS = 1
CWT_SUB = 2

# A receipt is a few hundred bytes and a path at most 64 hashes: anything larger is refused
# before it is decoded.
MAX_RECEIPT_BYTES = 16 * 1024
_MAX_PATH = 64

_PROTECTED_LABELS = frozenset({HDR_ALG, HDR_KID, HDR_CWT_CLAIMS, HDR_VDS})


@dataclass(frozen=True, slots=True)
class CoseReceiptClaims:
    """What a verified receipt says: entry `index` is in the tree of `tree_size` entries
    whose root is `root_hash`, in the log `issuer`, signed by the key `kid`."""

    tree_size: int
    index: int
    root_hash: bytes
    issuer: str
    subject: str
    kid: bytes


def entry_subject(origin: str, index: int) -> str:
    """The receipt's `sub`: the entry, named under the log's origin."""
    return f"{origin}/entries/{index}"


def public_key_pem(verifier: NoteVerifier) -> bytes:
    """The ledger key as a PEM SubjectPublicKeyInfo, the form COSE tools (`scitt-cose
    --receipt-log-pubkey`) take; the same key as the note verifier key's last part."""
    return Ed25519PublicKey.from_public_bytes(verifier.public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _dumps(value: object) -> bytes:
    return cbor2.dumps(value, canonical=True)


def protected_header(verifier: NoteVerifier, origin: str, index: int) -> bytes:
    """The serialized protected header of entry `index`'s receipt."""
    return _dumps(
        {
            HDR_ALG: ALG_EDDSA,
            HDR_KID: verifier.key_id,
            HDR_CWT_CLAIMS: {CWT_ISS: origin, CWT_SUB: entry_subject(origin, index)},
            HDR_VDS: VDS_RFC9162_SHA256,
        }
    )


def sig_structure(protected: bytes, root: bytes) -> bytes:
    """RFC 9052 §4.4: what is signed, with no external data and the root as the payload."""
    return _dumps(["Signature1", protected, b"", root])


def encode_inclusion_proof(tree_size: int, index: int, path: Sequence[bytes]) -> bytes:
    """RFC 9942 §5.2 (RFC9162_SHA256): `[tree_size, leaf_index, inclusion_path]`."""
    return _dumps([tree_size, index, list(path)])


def issue_cose_receipt(
    signer: NoteSigner,
    origin: str,
    *,
    index: int,
    tree_size: int,
    path: Sequence[bytes],
    leaf_hash: bytes,
    root_hash: bytes,
) -> bytes:
    """Sign the receipt of entry `index` in the tree of `tree_size` entries.

    The proof must take `leaf_hash` to `root_hash` (the signed checkpoint's root): a stored
    tree that no longer matches its checkpoint is refused here rather than signed.
    """
    if not merkle.verify_inclusion(leaf_hash, index, tree_size, path, root_hash):
        raise EntryAltered(
            f"the stored proof of entry {index} does not lead to the root of the signed "
            f"checkpoint of size {tree_size}, so no receipt is signed; run `prov verify`"
        )
    protected = protected_header(signer.verifier, origin, index)
    signature = signer.key.sign(sig_structure(protected, root_hash))
    unprotected = {
        HDR_VDP: {VDP_INCLUSION_PROOFS: [encode_inclusion_proof(tree_size, index, path)]}
    }
    return _dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, unprotected, None, signature]))


def _strict(data: bytes, what: str) -> Any:
    """Decode one CBOR item that must be exactly the deterministic encoding this ledger
    writes: trailing bytes, indefinite lengths, non-minimal integers, duplicate or unsorted
    map keys all change the re-encoding, and one signature must not have many encodings."""
    try:
        value = cbor2.loads(data)
        again = _dumps(value)
    except Exception as error:  # the decoder raises many types on hostile input
        raise CoseReceiptInvalid(f"{what} is not CBOR: {type(error).__name__}") from None
    if again != data:
        raise CoseReceiptInvalid(f"{what} is not deterministically encoded CBOR")
    return value


def _only_key(value: object, key: int, what: str) -> Any:
    if not isinstance(value, Mapping) or list(value) != [key]:
        raise CoseReceiptInvalid(f"{what} must be a map holding only label {key}")
    return value[key]


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class _Parsed:
    protected: bytes
    header: Mapping[Any, Any]
    tree_size: int
    index: int
    path: list[bytes]
    signature: bytes


def _parse(receipt: bytes) -> _Parsed:
    if not isinstance(receipt, bytes | bytearray) or len(receipt) > MAX_RECEIPT_BYTES:
        raise CoseReceiptInvalid(f"a receipt is at most {MAX_RECEIPT_BYTES} bytes")
    outer = _strict(bytes(receipt), "the receipt")
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != COSE_SIGN1_TAG:
        raise CoseReceiptInvalid("the receipt is not a tagged COSE_Sign1 (tag 18)")
    if not isinstance(outer.value, Sequence) or len(outer.value) != 4:
        raise CoseReceiptInvalid("a COSE_Sign1 is [protected, unprotected, payload, signature]")
    protected, unprotected, payload, signature = outer.value
    if payload is not None:
        # An attached payload would be verified as given, binding nothing to the leaf.
        raise CoseReceiptInvalid("the receipt's payload must be detached (nil)")
    if not isinstance(signature, bytes) or len(signature) != _ed25519.SIGNATURE_SIZE:
        raise CoseReceiptInvalid("the signature is not a 64-byte Ed25519 signature")
    if not isinstance(protected, bytes):
        raise CoseReceiptInvalid("the protected header is not a byte string")
    header = _strict(protected, "the protected header")
    if not isinstance(header, Mapping) or set(header) != _PROTECTED_LABELS:
        raise CoseReceiptInvalid(
            f"the protected header must hold exactly the labels {sorted(_PROTECTED_LABELS)}"
        )
    proofs = _only_key(
        _only_key(unprotected, HDR_VDP, "the unprotected header"),
        VDP_INCLUSION_PROOFS,
        "the verifiable data proofs (396)",
    )
    if not isinstance(proofs, Sequence) or len(proofs) != 1 or not isinstance(proofs[0], bytes):
        raise CoseReceiptInvalid("the receipt must carry exactly one inclusion proof (bstr)")
    proof = _strict(proofs[0], "the inclusion proof")
    if not isinstance(proof, Sequence) or len(proof) != 3:
        raise CoseReceiptInvalid("an inclusion proof is [tree_size, leaf_index, path]")
    tree_size, index, path = proof
    if not (_int(tree_size) and _int(index) and 0 <= index < tree_size <= MAX_TREE_SIZE):
        raise CoseReceiptInvalid("the proof's leaf index is not inside its tree size")
    if (
        not isinstance(path, Sequence)
        or len(path) > _MAX_PATH
        or not all(isinstance(node, bytes) and len(node) == merkle.HASH_SIZE for node in path)
    ):
        raise CoseReceiptInvalid("the proof's path is not a list of 32-byte hashes")
    return _Parsed(protected, header, tree_size, index, list(path), signature)


def _check_header(parsed: _Parsed, verifier: NoteVerifier) -> tuple[str, str]:
    header = parsed.header
    if header[HDR_ALG] != ALG_EDDSA or header[HDR_VDS] != VDS_RFC9162_SHA256:
        raise CoseReceiptInvalid("the receipt is not EdDSA (-8) over RFC9162_SHA256 (395: 1)")
    if header[HDR_KID] != verifier.key_id:
        raise CoseReceiptInvalid(
            f"the receipt's kid is not the ledger key's id {verifier.key_id.hex()}"
        )
    claims = header[HDR_CWT_CLAIMS]
    if not isinstance(claims, Mapping) or set(claims) != {CWT_ISS, CWT_SUB}:
        raise CoseReceiptInvalid("the CWT claims (15) must hold exactly iss (1) and sub (2)")
    issuer, subject = claims[CWT_ISS], claims[CWT_SUB]
    if issuer != verifier.name:
        raise CoseReceiptInvalid(f"the receipt is issued by {issuer!r}, not {verifier.name!r}")
    if subject != entry_subject(verifier.name, parsed.index):
        # The proof's index is not signed; the subject is, and must name the same entry.
        raise CoseReceiptInvalid(
            f"the signed subject {subject!r} does not name entry {parsed.index} of the proof"
        )
    return issuer, subject


def _leaf(entry_bytes: bytes | None, leaf_hash: bytes | None, index: int) -> bytes:
    if (entry_bytes is None) == (leaf_hash is None):
        raise TypeError("give exactly one of entry_bytes and leaf_hash")
    if leaf_hash is not None:
        if len(leaf_hash) != merkle.HASH_SIZE:
            raise CoseReceiptInvalid("a leaf hash is 32 bytes")
        return leaf_hash
    assert entry_bytes is not None
    # The entry commits to its own index: it must be the proof's.
    if len(entry_bytes) < ENTRY_HEAD.size or not entry_bytes.startswith(MAGIC):
        raise CoseReceiptInvalid("the entry bytes are not a log entry of this ledger")
    entry_index = ENTRY_HEAD.unpack_from(entry_bytes)[1]
    if entry_index != index:
        raise CoseReceiptInvalid(f"the entry is entry {entry_index}, the proof is for {index}")
    return merkle.hash_leaf(entry_bytes)


def verify_cose_receipt(
    receipt: bytes,
    verifier: NoteVerifier,
    *,
    entry_bytes: bytes | None = None,
    leaf_hash: bytes | None = None,
    checkpoint: Checkpoint | None = None,
) -> CoseReceiptClaims:
    """Verify a receipt for one entry, given its entry bytes (`GET /v1/entries/{index}`) or
    its leaf hash (a DSSE receipt's `leaf_hash`), under the ledger's verifier key.

    Rebuilds the root from the leaf and the proof, and checks the Ed25519 signature over it
    and the profile: every header label and value, the kid, the issuer (the key's origin)
    and the subject (the proof's entry). With `checkpoint` (one the caller opened with
    `open_checkpoint`), the proof's tree size and root must be that checkpoint's. Raises
    `CoseReceiptInvalid` naming what failed.
    """
    parsed = _parse(receipt)
    issuer, subject = _check_header(parsed, verifier)
    leaf = _leaf(entry_bytes, leaf_hash, parsed.index)
    root = merkle.root_from_inclusion(leaf, parsed.index, parsed.tree_size, parsed.path)
    if root is None:
        raise CoseReceiptInvalid(
            f"the proof is malformed for entry {parsed.index} of a tree of {parsed.tree_size}"
        )
    if not _ed25519.verify(
        verifier.public_key, sig_structure(parsed.protected, root), parsed.signature
    ):
        raise CoseReceiptInvalid(
            "the signature does not verify over the root the proof rebuilds from this leaf"
        )
    if checkpoint is not None and (
        checkpoint.origin != issuer
        or checkpoint.size != parsed.tree_size
        or checkpoint.root_hash != root
    ):
        raise CoseReceiptInvalid(
            f"the receipt's tree (size {parsed.tree_size}) is not the checkpoint's "
            f"(size {checkpoint.size})"
        )
    return CoseReceiptClaims(parsed.tree_size, parsed.index, root, issuer, subject, verifier.key_id)
