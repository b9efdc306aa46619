"""Checkpoints published append-only: to a directory, and to S3 (SeaweedFS on loopback).

Each publication is the next contiguous sequence number; a size not larger than the last
one published is a no-op; nothing is ever overwritten, by one publisher or by several
racing (threads here, each with its own publisher, as separate server processes would be).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import stat
import threading
import uuid
from base64 import b64encode
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from ledger.errors import BadConfiguration, NoteError
from ledger.keys.ed25519 import SigningKey
from ledger.log.note import Checkpoint, NoteSigner, parse_note
from ledger.publication import (
    CheckpointPublisher,
    PublicationFailed,
    PublishedCheckpoint,
    open_publisher,
    open_target,
    read_published,
)
from ledger.publication.directory import DirectoryTarget
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, SeaweedFS

SIGNER = NoteSigner("test.example/log", SigningKey.generate())


def note_of(size: int, salt: str = "") -> str:
    """A signed checkpoint note of `size` (the root only has to be distinct)."""
    root = hashlib.sha256(f"{size}{salt}".encode()).digest()
    return SIGNER.sign(Checkpoint("test.example/log", size, root).body())


def sizes_of(published: list[PublishedCheckpoint]) -> list[int]:
    return [Checkpoint.parse_body(parse_note(p.note).body).size for p in published]


def assert_append_only_history(published: list[PublishedCheckpoint], last: int) -> None:
    """Contiguous from 0, sizes strictly growing, the largest size present."""
    assert [p.seq for p in published] == list(range(len(published)))
    sizes = sizes_of(published)
    assert sizes == sorted(set(sizes))
    assert sizes[-1] == last


def test_a_directory_publication_appends_in_sequence_and_never_overwrites(
    tmp_path: Path,
) -> None:
    target = tmp_path / "published"
    publisher = open_publisher(str(target), None)
    assert publisher.publish(3, note_of(3))
    assert publisher.publish(5, note_of(5))
    assert not publisher.publish(5, note_of(5, "another root"))  # not larger: nothing written
    assert not publisher.publish(4, note_of(4))
    assert publisher.publish(9, note_of(9))

    files = sorted((target / "checkpoints").iterdir())
    assert [f.name for f in files] == [f"{n:020d}" for n in range(3)]
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o444
    assert files[1].read_text() == note_of(5)

    published = read_published(str(target), None)
    assert [p.name for p in published] == [f.name for f in files]
    assert sizes_of(published) == [3, 5, 9]
    assert published[2].digest == hashlib.sha256(note_of(9).encode()).hexdigest()

    # A new publisher (a restarted server) carries on after what is there.
    again = open_publisher(str(target), None)
    assert not again.publish(9, note_of(9))
    assert again.publish(12, note_of(12))
    assert sizes_of(read_published(str(target), None)) == [3, 5, 9, 12]

    # The target refuses to replace a published file, and leaves it as it was.
    assert not DirectoryTarget(target).create(files[0].name, b"rewritten")
    assert files[0].read_text() == note_of(3)
    # No temporary file is left behind.
    assert all(not f.name.startswith(".") for f in (target / "checkpoints").iterdir())


def test_a_publisher_that_loses_a_race_reads_the_winner_and_goes_on(tmp_path: Path) -> None:
    first, second = (open_publisher(str(tmp_path), None) for _ in range(2))
    assert first.publish(1, note_of(1))
    assert not second.publish(1, note_of(1))  # both have now read the target
    assert first.publish(20, note_of(20))  # `second` does not know
    assert not second.publish(15, note_of(15))  # its write of 00…01 clashes; 20 >= 15
    assert second.publish(25, note_of(25))
    published = read_published(str(tmp_path), None)
    assert sizes_of(published) == [1, 20, 25]
    assert published[1].note == note_of(20)


def test_a_note_of_another_size_or_no_note_is_refused(tmp_path: Path) -> None:
    publisher = open_publisher(str(tmp_path), None)
    with pytest.raises(NoteError, match="size 7, not 8"):
        publisher.publish(8, note_of(7))
    with pytest.raises(NoteError, match="not a checkpoint note"):
        publisher.publish(8, "eight\n")
    assert read_published(str(tmp_path), None) == []
    # Something that is not a checkpoint where the newest one should be stops publication.
    DirectoryTarget(tmp_path).create("00000000000000000000", b"not a note")
    with pytest.raises(PublicationFailed, match=r"00000000000000000000 .* not a checkpoint"):
        open_publisher(str(tmp_path), None).publish(8, note_of(8))


def test_a_target_is_a_directory_or_an_s3_url(tmp_path: Path) -> None:
    for bad in ("", "ftp://host/dir", "s3://Bad_Bucket/x", "file://elsewhere/dir"):
        with pytest.raises(BadConfiguration):
            open_target(bad)
    assert open_target(f"file://{tmp_path}").location == str(tmp_path)
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a directory")
    with pytest.raises(PublicationFailed, match="file: cannot list checkpoints"):
        open_publisher(str(blocked), None).publish(1, note_of(1))


def race(publishers: list[CheckpointPublisher], last: int) -> list[int]:
    """Each publisher publishes every size from 1 to `last` in order, all at once; the
    number of publications each made."""
    made = [0] * len(publishers)
    start = threading.Barrier(len(publishers))
    failures: list[BaseException] = []

    def run(position: int) -> None:
        try:
            start.wait()
            for size in range(1, last + 1):
                made[position] += publishers[position].publish(size, note_of(size))
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(publishers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    return made


@pytest.mark.parametrize("shared", [False, True], ids=["one-publisher-each", "one-shared"])
def test_concurrent_publishers_never_lose_duplicate_or_skip(tmp_path: Path, shared: bool) -> None:
    one = open_publisher(str(tmp_path), None)
    publishers = [one if shared else open_publisher(str(tmp_path), None) for _ in range(8)]
    made = race(publishers, 40)
    published = read_published(str(tmp_path), None)
    assert_append_only_history(published, 40)
    assert sum(made) == len(published)  # each file was claimed by exactly one publish


# S3


def test_an_s3_publication_appends_and_refuses_overwrites(seaweedfs: SeaweedFS) -> None:
    url = seaweedfs.fresh_url("pub")
    publisher = open_publisher(url, seaweedfs.options())
    assert publisher.publish(2, note_of(2))
    assert not publisher.publish(2, note_of(2, "other"))
    assert publisher.publish(6, note_of(6))
    late = open_publisher(url, seaweedfs.options())
    assert not late.publish(6, note_of(6))
    assert publisher.publish(7, note_of(7))
    assert late.publish(8, note_of(8))  # after a clash on 00…02, which `publisher` wrote

    published = read_published(url, seaweedfs.options())
    assert [p.name for p in published] == [f"{n:020d}" for n in range(4)]
    assert sizes_of(published) == [2, 6, 7, 8]
    listed = seaweedfs.filesystem().get_file_info(
        f"{url.removeprefix('s3://')}/checkpoints/{published[0].name}"
    )
    assert listed.size == len(note_of(2).encode())
    # A conditional create of a published name is refused, the object left as it was.
    target = open_target(url, seaweedfs.options())
    assert not target.create(published[0].name, b"rewritten")
    assert target.read(published[0].name) == note_of(2).encode()


def test_concurrent_s3_publishers_never_lose_duplicate_or_skip(seaweedfs: SeaweedFS) -> None:
    url = seaweedfs.fresh_url("race")
    publishers = [open_publisher(url, seaweedfs.options()) for _ in range(4)]
    made = race(publishers, 12)
    published = read_published(url, seaweedfs.options())
    assert_append_only_history(published, 12)
    assert sum(made) == len(published)


def test_an_s3_target_that_refuses_the_credentials_fails_in_one_line(
    seaweedfs: SeaweedFS,
) -> None:
    wrong = dataclasses.replace(
        seaweedfs.options(),
        secret_access_key="not-the-secret",  # noqa: S106 - wrong on purpose
    )
    with pytest.raises(
        PublicationFailed, match=r"(refused the credentials|answered HTTP 403): cannot list"
    ):
        open_publisher(seaweedfs.fresh_url(), wrong).publish(1, note_of(1))


class _SignedS3:
    """Requests the object client cannot make (bucket settings, versions), signed with
    AWS Signature Version 4 for the test server's identity."""

    def __init__(self, seaweedfs: SeaweedFS) -> None:
        self.endpoint = seaweedfs.endpoint
        self.host = self.endpoint.removeprefix("http://")

    def __call__(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> httpx.Response:
        query = query or {}
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        payload = hashlib.sha256(body).hexdigest()
        signed = {k.lower(): v for k, v in (headers or {}).items()} | {
            "host": self.host,
            "x-amz-date": stamp,
            "x-amz-content-sha256": payload,
        }
        names = ";".join(sorted(signed))
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/-_.~"),
                "&".join(
                    f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                    for k, v in sorted(query.items())
                ),
                "".join(f"{k}:{signed[k].strip()}\n" for k in sorted(signed)),
                names,
                payload,
            ]
        )
        scope = f"{stamp[:8]}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + SECRET_ACCESS_KEY).encode()
        for part in (stamp[:8], REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return httpx.request(
            method, self.endpoint + path, params=query, headers=signed, content=body, timeout=10
        )


def test_with_object_lock_a_published_version_cannot_be_deleted(seaweedfs: SeaweedFS) -> None:
    """A bucket with Object Lock and a default COMPLIANCE retention gives each published
    checkpoint that retention, with no header from the publisher: its version cannot be
    deleted, and a DELETE without a version only hides it behind a marker, a gap the
    auditor names, while the retained version stays readable."""
    s3 = _SignedS3(seaweedfs)
    bucket = f"locked-{uuid.uuid4().hex[:10]}"
    made = s3("PUT", f"/{bucket}", headers={"x-amz-bucket-object-lock-enabled": "true"})
    assert made.status_code == 200, made.text
    rule = (
        b'<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
        b"<Mode>COMPLIANCE</Mode><Days>1</Days></DefaultRetention></Rule>"
        b"</ObjectLockConfiguration>"
    )
    md5 = b64encode(hashlib.md5(rule).digest()).decode()  # noqa: S324 - S3 asks for MD5 here
    locked = s3("PUT", f"/{bucket}", {"object-lock": ""}, {"content-md5": md5}, rule)
    assert locked.status_code == 200, locked.text

    url = f"s3://{bucket}/log"
    publisher = open_publisher(url, seaweedfs.options())
    assert publisher.publish(4, note_of(4))
    assert publisher.publish(5, note_of(5))
    key = f"/{bucket}/log/checkpoints/{0:020d}"
    head = s3("HEAD", key)
    assert head.headers.get("x-amz-object-lock-mode") == "COMPLIANCE"
    version = head.headers["x-amz-version-id"]

    refused = s3("DELETE", key, {"versionId": version})
    assert refused.status_code == 403
    assert s3("DELETE", key).status_code == 204  # a delete marker only
    assert [p.seq for p in read_published(url, seaweedfs.options())] == [1]
    kept = s3("GET", key, {"versionId": version})
    assert kept.status_code == 200
    assert kept.text == note_of(4)
