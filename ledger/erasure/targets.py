"""What an erasure erases: a subject's blobs, and the content past its tenant's expiry.

- A **subject's** blobs are those uploaded for it (the `Prov-Subject` of their upload)
  and those its decisions reference (`blob_refs`), whoever uploaded them: a decision about a
  person may point at content stored without a subject.
- **Expired** content is a blob whose latest use is older than the cutoff: uploaded before
  it, and referenced by no decision logged since. A policy document stored as a blob is a
  rule, not personal content, and never expires.
"""

from __future__ import annotations

from sqlalchemy import Connection, exists, select, union

from ledger.log.store import first_index_at, read_head
from ledger.storage.schema import blob_refs, blobs, decisions, policies


def subject_known(connection: Connection, tenant: str, subject: str) -> bool:
    """Whether the tenant holds a decision or a blob about the subject."""
    return bool(
        connection.execute(
            select(
                exists().where(decisions.c.tenant == tenant, decisions.c.subject == subject)
                | exists().where(blobs.c.tenant == tenant, blobs.c.subject == subject)
            )
        ).scalar()
    )


def subject_digests(connection: Connection, tenant: str, subject: str) -> list[str]:
    """Every blob of the subject, erased or not, sorted; a digest its decisions reference
    is listed even when the ledger never held its bytes (so that they are never taken)."""
    uploaded = select(blobs.c.digest).where(blobs.c.tenant == tenant, blobs.c.subject == subject)
    referenced = (
        select(blob_refs.c.digest)
        .join(decisions, decisions.c.idx == blob_refs.c.idx)
        .where(decisions.c.tenant == tenant, decisions.c.subject == subject)
    )
    found = union(uploaded, referenced).subquery()
    return list(connection.execute(select(found.c.digest).order_by(found.c.digest)).scalars())


def expired_digests(connection: Connection, tenant: str, cutoff_us: int) -> list[str]:
    """The tenant's live blobs uploaded before `cutoff_us` that no decision logged since
    references, policy documents aside; sorted."""
    recent = first_index_at(connection, cutoff_us, read_head(connection).size)
    used_since = exists().where(
        blob_refs.c.tenant == blobs.c.tenant,
        blob_refs.c.digest == blobs.c.digest,
        blob_refs.c.idx >= recent,
    )
    documents = select(policies.c.digest).where(policies.c.tenant == tenant)
    return list(
        connection.execute(
            select(blobs.c.digest)
            .where(
                blobs.c.tenant == tenant,
                blobs.c.erased_us.is_(None),
                blobs.c.created_us < cutoff_us,
                ~used_since,
                blobs.c.digest.not_in(documents),
            )
            .order_by(blobs.c.digest)
        ).scalars()
    )
