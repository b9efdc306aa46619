"""Blobs in the SDK: personal content goes into the ledger as salted blobs, never inline.

A record references a blob by digest; the signature and the log cover the digest, never
the bytes, so the bytes can be erased later without breaking a proof. `Client.put_blob`
salts the content first (a fresh 32-byte salt, `ledger.blobs.salted`), so that the digest
in the record hides a low-entropy value (a name, a yes/no, a salary band) from anyone who
would hash guesses; it names the subject the content is about (the `Prov-Subject` header),
so the server seals it under that subject's key and erasing the subject erases it. Use the
digest it returns as a context snapshot's `blob`, the prompt's `messages_blob`, or wherever
the record references content. An upload is idempotent: a retry sends the same bytes.
"""

from __future__ import annotations

from ingest.client._flows import Flow, Request, exchange, response_problem
from ledger.backoff import Attempts
from ledger.blobs.digest import digest_of
from ledger.blobs.salted import salted

__all__ = ["SUBJECT_HEADER", "blob_bytes", "put_blob_flow"]

SUBJECT_HEADER = "Prov-Subject"
OCTETS = "application/octet-stream"


def blob_bytes(content: bytes, *, salt: bool) -> bytes:
    """What is uploaded for `content`: salted (the default for personal content) or as is
    (content meant to be found by its plain digest, such as a shared policy document)."""
    return salted(content) if salt else content


def put_blob_flow(blob: bytes, subject: str | None, attempts: Attempts) -> Flow[str]:
    """`PUT /v1/blobs/{digest}` with `blob`; its digest once stored (or already held)."""
    digest = digest_of(blob)
    headers = ((SUBJECT_HEADER, subject),) if subject is not None else ()
    request = Request("PUT", f"/v1/blobs/{digest}", blob, OCTETS, headers)
    response = yield from exchange(request, attempts)
    if response.status not in (200, 201):
        raise response_problem(response)
    return digest
