"""Erasure as a record: a subject's content erased without breaking a proof, under the
tenant's retention floor and legal holds (docs/erasure.md).

- `eraser`: erasure requests (a subject, named blobs, expiry), recorded and marked in one
  commit, then completed (objects dropped, the subject's data key destroyed).
- `rules`, `rulebook`: the retention floor and legal holds, read and recorded.
- `targets`: which blobs an erasure takes.
- `blob_check`: `prov verify --blobs`, every blob present, erased by a record, or unreadable.
- `requests`, `views`, `made`: the requests taken, the answers given, the records signed.
"""
