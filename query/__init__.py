"""The read path: why-reports, search, proofs over HTTP, auditor pages, Parquet export."""
