"""Read routes over HTTP: decisions, the log, proofs and tiles, and reports."""
