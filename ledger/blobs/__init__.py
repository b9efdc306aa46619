"""Blobs: the content records reference by digest, kept apart from the log so that it can
be erased without breaking a proof.

- `digest`, `salted`: the content-addressed form and the salted (hiding) form; both are
  pure and installed with the client.
- `sealing`, `kek`, `subject_keys`: encryption at rest under a per-subject data key that
  lives outside the database, so that destroying it erases every copy.
- `stores`: where the encrypted bytes live (the database, a directory, S3).
- `vault`: the one entry point the server uses to put, get and erase blobs.
"""
