"""The cosignatures a log received from its witnesses, kept beside its checkpoints.

This is the log's side (server only: it needs SQLAlchemy). Each verified cosignature line is
stored once per (checkpoint size, witness); a served note is the stored checkpoint note with
its cosignature lines appended, ordered by witness name, so two reads of one checkpoint
always give the same bytes. The checkpoints themselves stay as the sequencer signed them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, exists, func, select

from ledger.log.store import StoredCheckpoint, checkpoint_at, latest_checkpoint
from ledger.storage.db import conflict_insert
from ledger.storage.schema import checkpoint_cosignatures


@dataclass(frozen=True, slots=True)
class ReceivedCosignature:
    witness: str
    line: str
    cosigned_s: int


@dataclass(frozen=True, slots=True)
class WitnessProgress:
    """The newest checkpoint a witness cosigned, as this log stored it."""

    witness: str
    tree_size: int
    cosigned_s: int
    received_us: int


def store_cosignatures(
    connection: Connection,
    tree_size: int,
    received: Sequence[ReceivedCosignature],
    now_us: int,
) -> None:
    """Keep `received` for the checkpoint of `tree_size`; a repeat is ignored."""
    if not received:
        return
    connection.execute(
        conflict_insert(connection, checkpoint_cosignatures).on_conflict_do_nothing(),
        [
            {
                "tree_size": tree_size,
                "witness": r.witness,
                "line": r.line,
                "cosigned_s": r.cosigned_s,
                "received_us": now_us,
            }
            for r in received
        ],
    )


def cosignature_lines(connection: Connection, tree_size: int) -> list[str]:
    rows = connection.execute(
        select(checkpoint_cosignatures.c.line)
        .where(checkpoint_cosignatures.c.tree_size == tree_size)
        .order_by(checkpoint_cosignatures.c.witness)
    )
    return [row[0] for row in rows]


def with_cosignatures(connection: Connection, stored: StoredCheckpoint) -> StoredCheckpoint:
    """`stored` with the cosignature lines its size received, after the log's own."""
    lines = cosignature_lines(connection, stored.tree_size)
    if not lines:
        return stored
    return StoredCheckpoint(stored.tree_size, stored.root_hash, stored.note + "".join(lines))


def newest_cosigned(
    connection: Connection,
    quorum: int,
    *,
    witnesses: Collection[str] = (),
    covering: int | None = None,
) -> StoredCheckpoint | None:
    """The newest checkpoint cosigned by at least `quorum` of `witnesses` (any witness when
    none are named; and, given `covering`, whose tree holds that index), with its
    cosignatures; None if there is none. A witness no longer configured never counts."""
    query = (
        select(checkpoint_cosignatures.c.tree_size)
        .group_by(checkpoint_cosignatures.c.tree_size)
        .having(func.count() >= max(quorum, 1))
        .order_by(checkpoint_cosignatures.c.tree_size.desc())
        .limit(1)
    )
    if witnesses:
        query = query.where(checkpoint_cosignatures.c.witness.in_(list(witnesses)))
    if covering is not None:
        query = query.where(checkpoint_cosignatures.c.tree_size > covering)
    size = connection.execute(query).scalar()
    if size is None:
        return None
    stored = checkpoint_at(connection, size)
    return None if stored is None else with_cosignatures(connection, stored)


def served_checkpoint(
    connection: Connection, quorum: int, witnesses: Collection[str] = ()
) -> StoredCheckpoint | None:
    """What `/checkpoint` serves. Without witnesses (`quorum` 0): the latest checkpoint.
    With them: only a checkpoint that `quorum` of them cosigned, the newest; before any
    has been, the empty tree's, so that what is served never goes back to a smaller tree
    and never holds what no witness saw."""
    if quorum <= 0:
        latest = latest_checkpoint(connection)
        return None if latest is None else with_cosignatures(connection, latest)
    cosigned = newest_cosigned(connection, quorum, witnesses=witnesses)
    if cosigned is not None:
        return cosigned
    return checkpoint_at(connection, 0) or latest_checkpoint(connection)


def best_covering(connection: Connection, index: int) -> StoredCheckpoint | None:
    """The cosigned checkpoint to prove entry `index` into: among those that hold it, the
    newest with as many cosigners as the newest cosigned checkpoint has (the witnesses
    configured now, as far as the log knows), else the newest with any."""
    newest_size = connection.execute(select(func.max(checkpoint_cosignatures.c.tree_size))).scalar()
    if newest_size is None:
        return None
    cosigners = connection.execute(
        select(func.count()).where(checkpoint_cosignatures.c.tree_size == newest_size)
    ).scalar_one()
    return newest_cosigned(connection, cosigners, covering=index) or newest_cosigned(
        connection, 1, covering=index
    )


def newest_of_others(
    connection: Connection, witness: str, others: Collection[str], above: int
) -> StoredCheckpoint | None:
    """The newest checkpoint above size `above` that another of `others` cosigned and
    `witness` did not: where `witness` should go next, so that the witnesses converge on the
    same sizes and a quorum forms even while the log grows."""
    mine = checkpoint_cosignatures.alias("mine")
    size = connection.execute(
        select(func.max(checkpoint_cosignatures.c.tree_size)).where(
            checkpoint_cosignatures.c.witness.in_([o for o in others if o != witness]),
            checkpoint_cosignatures.c.tree_size > above,
            ~exists().where(
                mine.c.tree_size == checkpoint_cosignatures.c.tree_size,
                mine.c.witness == witness,
            ),
        )
    ).scalar()
    return None if size is None else checkpoint_at(connection, size)


def witness_progress(connection: Connection) -> list[WitnessProgress]:
    """Per witness, the newest checkpoint it cosigned for this log."""
    newest = (
        select(
            checkpoint_cosignatures.c.witness,
            func.max(checkpoint_cosignatures.c.tree_size).label("size"),
        )
        .group_by(checkpoint_cosignatures.c.witness)
        .subquery()
    )
    rows = connection.execute(
        select(
            checkpoint_cosignatures.c.witness,
            checkpoint_cosignatures.c.tree_size,
            checkpoint_cosignatures.c.cosigned_s,
            checkpoint_cosignatures.c.received_us,
        )
        .join(
            newest,
            (newest.c.witness == checkpoint_cosignatures.c.witness)
            & (newest.c.size == checkpoint_cosignatures.c.tree_size),
        )
        .order_by(checkpoint_cosignatures.c.witness)
    )
    return [WitnessProgress(r[0], r[1], r[2], r[3]) for r in rows]
