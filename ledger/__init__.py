"""The ledger core: records, envelopes, the Merkle log, checkpoints, storage and verification.

It knows nothing of HTTP; `ingest`, `query` and `replay` build on it, and `service` composes them.
"""
