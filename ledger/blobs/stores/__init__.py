"""Object stores for encrypted blob bytes: the database (the embedded default), a
filesystem directory, and S3-compatible object storage. `open_store` picks one from the
`PROV_BLOB_STORE` setting."""
