"""The log: entries, the RFC 9162 Merkle tree, C2SP checkpoints, proofs, the sequencer, stored
reads, receipts and full verification.
"""
