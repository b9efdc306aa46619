"""Verifiable Parquet export: rows, schemas, partitioned writing, manifests and offline export
verification.
"""
