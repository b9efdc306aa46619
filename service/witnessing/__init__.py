"""The log's side of witnessing: asking witnesses to cosign each new checkpoint, keeping their
cosignatures, and publishing checkpoints where the operator cannot rewrite them
(docs/witness.md). It runs beside ingest, in the server's lifespan, and never blocks it."""
