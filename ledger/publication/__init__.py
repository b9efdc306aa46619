"""Checkpoints published where the operator cannot quietly rewrite them.

The server's checkpoint follower writes each checkpoint `/checkpoint` serves to a
directory or an S3 prefix, append-only, under a contiguous sequence number
(`publisher.py`; the targets in `directory.py` and `s3.py`). `prov audit --from-published`
reads them back (`read_published`) and refuses a gap, a shrinking tree, a rewritten or
deleted checkpoint it has seen, and two checkpoints that are not consistent.
"""

from ledger.publication.base import PublicationFailed, Target, name_of, sequence_of
from ledger.publication.publisher import (
    CheckpointPublisher,
    PublishedCheckpoint,
    open_publisher,
    open_target,
    read_published,
    read_target,
)

__all__ = [
    "CheckpointPublisher",
    "PublicationFailed",
    "PublishedCheckpoint",
    "Target",
    "name_of",
    "open_publisher",
    "open_target",
    "read_published",
    "read_target",
    "sequence_of",
]
