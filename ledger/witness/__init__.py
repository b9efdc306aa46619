"""Witnesses: C2SP tlog-cosignature and tlog-witness, both the witness's side and the log's.

`cosignature` reads and writes Ed25519 `cosignature/v1` lines, `policy` says how many known
witnesses must have cosigned a checkpoint, `protocol` is the `add-checkpoint` wire format.
Nothing here needs the server's dependencies: auditors and the SDK import it.
"""
