"""The delegation index: rows derived from principal, revocation and authorized decision
records, written in the transaction that appends them, and the checks that need them.

Rules 9 (revocation) and 10 (replay) depend on what the log already holds, so the sequencer
checks them under the log's lock, in log order: a revocation stored earlier in the log, or
earlier in the same batch, refuses a decision whose chain it revokes, and an invocation or
nonce already stored refuses the record that repeats it. The unique constraints on
`invocations` stand behind that check: if it ever let a replay through, the insert would
fail and the whole batch would roll back, so a batch is never stored in part.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, or_, select

from ledger.delegation import ucan
from ledger.delegation.chain import Rule, rejection
from ledger.errors import DelegationInvalid
from ledger.log.store import bulk_insert
from ledger.storage.schema import invocations, revocations


@dataclass(frozen=True, slots=True)
class InvocationRow:
    """A decision whose chain verified at admission."""

    cid: bytes
    issuer: str
    nonce: bytes
    root: str
    chain: tuple[bytes, ...]  # the delegations' CIDs, root first, for rule 9


@dataclass(frozen=True, slots=True)
class PrincipalRow:
    did: str
    name: str
    display_name: str | None
    kind: str


@dataclass(frozen=True, slots=True)
class RevocationRow:
    cid: bytes  # of the revoked delegation
    revoker: str


AuthorityRow = InvocationRow | PrincipalRow | RevocationRow


class AuthorityGuard:
    """Rules 9 and 10 for one batch, from two queries made under the log's lock."""

    def __init__(
        self,
        used_cids: dict[bytes, int],
        used_nonces: dict[tuple[str, bytes], int],
        revoked: set[tuple[str, bytes]],
    ) -> None:
        self._used_cids = used_cids  # CID -> log index that holds it; -1 within the batch
        self._used_nonces = used_nonces
        self._revoked = revoked

    @classmethod
    def load(cls, connection: Connection, rows: Iterable[AuthorityRow | None]) -> AuthorityGuard:
        invoked = [row for row in rows if isinstance(row, InvocationRow)]
        if not invoked:
            return cls({}, {}, set())
        used = connection.execute(
            select(
                invocations.c.idx, invocations.c.cid, invocations.c.issuer, invocations.c.nonce
            ).where(
                or_(
                    invocations.c.cid.in_({row.cid for row in invoked}),
                    invocations.c.nonce.in_({row.nonce for row in invoked}),
                )
            )
        ).all()
        chain = {cid for row in invoked for cid in row.chain}
        revoked = connection.execute(
            select(revocations.c.tenant, revocations.c.cid).where(revocations.c.cid.in_(chain))
        ).all()
        return cls(
            {bytes(row.cid): row.idx for row in used},
            {(row.issuer, bytes(row.nonce)): row.idx for row in used},
            {(row.tenant, bytes(row.cid)) for row in revoked},
        )

    def admit(self, tenant: str, row: AuthorityRow | None) -> DelegationInvalid | None:
        """Refuse the record if rule 9 or 10 fails; otherwise count it as stored."""
        if isinstance(row, RevocationRow):
            self._revoked.add((tenant, row.cid))
        if not isinstance(row, InvocationRow):
            return None
        for position, cid in enumerate(row.chain):
            if (tenant, cid) in self._revoked:
                return rejection(
                    Rule.REVOCATION,
                    f"{ucan.cid_text(cid)} was revoked by a record earlier in the log",
                    f"/payload/delegation/{position}",
                )
        held = self._used_cids.get(row.cid, self._used_nonces.get((row.issuer, row.nonce)))
        if held is not None:
            where = "an earlier record of this batch" if held < 0 else f"the record at {held}"
            return rejection(
                Rule.REPLAY,
                f"{where} already carries this invocation or its issuer's nonce",
                "/payload/invocation",
            )
        self._used_cids[row.cid] = -1
        self._used_nonces[(row.issuer, row.nonce)] = -1
        return None


def insert_authority_rows(
    connection: Connection, rows: Sequence[tuple[int, str, AuthorityRow]]
) -> None:
    """Rows of `(idx, tenant, row)`, inside the caller's transaction."""
    principal_rows, revocation_rows, invocation_rows = [], [], []
    for index, tenant, row in rows:
        match row:
            case PrincipalRow():
                principal_rows.append(
                    (index, tenant, row.did, row.name, row.display_name, row.kind)
                )
            case RevocationRow():
                revocation_rows.append((index, tenant, row.cid, row.revoker))
            case InvocationRow():
                invocation_rows.append((index, tenant, row.cid, row.issuer, row.nonce, row.root))
    bulk_insert(
        connection,
        "principals",
        ("idx", "tenant", "did", "name", "display_name", "kind"),
        principal_rows,
    )
    bulk_insert(connection, "revocations", ("idx", "tenant", "cid", "revoker"), revocation_rows)
    bulk_insert(
        connection,
        "invocations",
        ("idx", "tenant", "cid", "issuer", "nonce", "root"),
        invocation_rows,
    )


def revocations_before(
    connection: Connection, tenant: str, cids: Iterable[bytes], index: int
) -> dict[bytes, int]:
    """Which of `cids` a revocation record of `tenant` before entry `index` revokes, with
    the index of the first such record."""
    wanted = set(cids)
    if not wanted:
        return {}
    rows = connection.execute(
        select(revocations.c.cid, revocations.c.idx)
        .where(
            revocations.c.tenant == tenant,
            revocations.c.cid.in_(wanted),
            revocations.c.idx < index,
        )
        .order_by(revocations.c.idx.desc())
    )
    return {bytes(row.cid): row.idx for row in rows}


def replay_state(connection: Connection, index: int, cid: bytes, issuer: str, nonce: bytes) -> str:
    """`unique` when entry `index` was checked at ingest and holds its invocation, `replay`
    when an earlier entry holds the invocation or its nonce, `unchecked` when neither (the
    record was stored with delegation checks off)."""
    holders = connection.execute(
        select(invocations.c.idx).where(
            or_(
                invocations.c.cid == cid,
                (invocations.c.issuer == issuer) & (invocations.c.nonce == nonce),
            )
        )
    ).scalars()
    first = min(holders, default=None)
    if first is None or first > index:
        return "unchecked"
    return "unique" if first == index else "replay"
