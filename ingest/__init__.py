"""The write path: HTTP routes for records, blobs and keys, group commit, the client SDK."""
