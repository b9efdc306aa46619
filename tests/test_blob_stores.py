"""The object store contract, on every backend: the database (SQLite and PostgreSQL), a
filesystem directory, and S3 (a real SeaweedFS on loopback).

Whole objects by name: a put is atomic and idempotent, a missing object reads as None, a
delete of a missing one is fine, tenants never share an object, a put whose source fails
leaves nothing. Then what each backend adds: a writer killed with SIGKILL midway, a disk
that refuses writes, S3 refused, hung or denied (`BlobStoreUnavailable`, within seconds),
and names that try to leave their directory or prefix.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.blobs.stores.base import ObjectStore
from ledger.blobs.stores.filesystem import FilesystemStore
from ledger.blobs.stores.names import split_name
from ledger.blobs.stores.s3 import PART_BYTES, S3Store
from ledger.blobs.vault import object_name
from ledger.errors import BlobStoreUnavailable
from ledger.storage.db import make_engine
from ledger.storage.migrate import migrate
from tests.http_server import free_port
from tests.s3_server import SeaweedFS

MiB = 1 << 20
KEY_ID = "0" * 32


def name_for(tenant: str, content: bytes) -> str:
    """The name the vault gives a blob's object (digest and data key id)."""
    return object_name(tenant, f"sha256:{hashlib.sha256(content).hexdigest()}", KEY_ID)


def in_chunks(data: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class SourceFailed(Exception):
    """The caller's bytes stopped coming (a client gone mid-upload)."""


def failing(data: bytes, after: int) -> Iterator[bytes]:
    chunks = list(in_chunks(data))
    yield from chunks[:after]
    raise SourceFailed("the upload stopped")


def database_store(url: str) -> ObjectStore:
    from ledger.blobs.stores.database import DatabaseStore  # noqa: PLC0415 - one backend

    engine = make_engine(url)
    migrate(engine)
    return DatabaseStore(engine)


@pytest.fixture(
    params=[
        "filesystem",
        "s3",
        "database-sqlite",
        pytest.param("database-postgres", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    kind: str = request.param
    if kind == "filesystem":
        return FilesystemStore(tmp_path / "blobs")
    if kind == "s3":
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        return S3Store(server.fresh_url(), server.options())
    if kind == "database-sqlite":
        return database_store(str(tmp_path / "ledger.db"))
    return database_store(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["filesystem", "s3"])
def own_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The stores that check names and sizes themselves (the database's trusts the vault)."""
    if request.param == "filesystem":
        return FilesystemStore(tmp_path / "blobs")
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    return S3Store(server.fresh_url(), server.options())


# --- the contract, on every backend -----------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 5 * MiB + 3], ids=["empty", "one-byte", "5MiB"])
def test_an_object_reads_back_exactly_as_put(store: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    name = name_for("acme", data)
    store.put(name, in_chunks(data), size)
    assert store.get(name) == data


def test_a_put_again_is_idempotent(store: ObjectStore) -> None:
    data = os.urandom(3000)
    name = name_for("acme", data)
    store.put(name, [data], len(data))
    store.put(name, in_chunks(data, 7), len(data))
    assert store.get(name) == data


def test_a_missing_object_reads_as_none_and_deletes_quietly(store: ObjectStore) -> None:
    name = name_for("acme", b"never stored")
    assert store.get(name) is None
    store.delete(name)
    store.delete(name)
    assert store.get(name) is None


def test_a_deleted_object_is_gone(store: ObjectStore) -> None:
    data = b"personal content"
    name = name_for("acme", data)
    store.put(name, [data], len(data))
    store.delete(name)
    assert store.get(name) is None
    store.delete(name)  # again: still fine
    store.put(name, [data], len(data))  # and it can be stored anew
    assert store.get(name) == data


def test_two_tenants_never_share_an_object(store: ObjectStore) -> None:
    ours, theirs = b"acme's bytes", b"globex's bytes"
    digest_named = name_for("acme", ours).split("/", 1)[1]
    store.put(f"acme/{digest_named}", [ours], len(ours))
    store.put(f"globex/{digest_named}", [theirs], len(theirs))
    assert store.get(f"acme/{digest_named}") == ours
    assert store.get(f"globex/{digest_named}") == theirs
    store.delete(f"acme/{digest_named}")
    assert store.get(f"globex/{digest_named}") == theirs


def test_a_put_whose_source_fails_leaves_nothing(store: ObjectStore) -> None:
    data = os.urandom(MiB)
    name = name_for("acme", data)
    with pytest.raises(SourceFailed):
        store.put(name, failing(data, after=5), len(data))
    assert store.get(name) is None


def test_many_small_objects_in_one_call(store: ObjectStore) -> None:
    objects = [(name_for("acme", bytes([n]) * n), bytes([n]) * n) for n in range(20)]
    store.put_many(objects)
    store.put_many(objects[:3])  # again: idempotent
    store.put_many([])
    for name, content in objects:
        assert store.get(name) == content


names = st.sampled_from(
    [name_for(tenant, bytes([n])) for tenant in ("acme", "globex") for n in range(3)]
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), names, st.binary(max_size=64)),
        st.tuples(st.just("delete"), names, st.just(b"")),
        st.tuples(st.just("get"), names, st.just(b"")),
    ),
    max_size=20,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations)
def test_any_sequence_of_operations_matches_a_dict(
    store: ObjectStore, operations: list[tuple[str, str, bytes]]
) -> None:
    # Each example in its own tenants, so that examples sharing the store never meet.
    run = uuid.uuid4().hex[:8]
    oracle: dict[str, bytes] = {}
    for operation, shared_name, data in operations:
        tenant, rest = shared_name.split("/", 1)
        name = f"{tenant}-{run}/{rest}"
        if operation == "put":
            # Content addressing: one name, one content; the first put fixes it.
            content = oracle.get(name, data)
            store.put(name, in_chunks(content, 5), len(content))
            oracle[name] = content
        elif operation == "delete":
            store.delete(name)
            oracle.pop(name, None)
        assert store.get(name) == oracle.get(name)


# --- what the stores check themselves -----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "acme/../../etc/passwd",
        "../../etc/passwd",
        ".hidden/object",
        "acme/.put-temporary",
        "acme/",
        "/acme/object",
        "acme/object/extra",
        "acme\\..\\object",
        "acme/object\n",
        "",
    ],
)
def test_a_name_that_could_leave_its_place_is_refused(own_store: ObjectStore, name: str) -> None:
    with pytest.raises(ValueError, match="not an object name"):
        own_store.put(name, [b"x"], 1)
    with pytest.raises(ValueError, match="not an object name"):
        own_store.get(name)
    with pytest.raises(ValueError, match="not an object name"):
        own_store.delete(name)


@pytest.mark.parametrize("given_bytes", [999, 1001])
def test_a_size_that_is_not_the_bytes_given_stores_nothing(
    own_store: ObjectStore, given_bytes: int
) -> None:
    data = os.urandom(given_bytes)
    name = name_for("acme", data)
    with pytest.raises(ValueError, match="bytes given for a 1000-byte object"):
        own_store.put(name, in_chunks(data, 100), 1000)
    assert own_store.get(name) is None


# --- the filesystem store -----------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from ledger.blobs.stores.filesystem import FilesystemStore
from ledger.blobs.stores.names import split_name

store = FilesystemStore(Path(sys.argv[1]))
chunk = bytes(range(256)) * 256

def chunks():
    for number in range(64):
        yield chunk
        print(number, flush=True)
        time.sleep(0.005)

store.put(sys.argv[2], chunks(), 64 * len(chunk))
print("done", flush=True)
"""
WHOLE = bytes(range(256)) * 256 * 64


def kill_writer_after(root: Path, name: str, chunks_written: int) -> None:
    """Run a writer of WHOLE under `name` and SIGKILL it once it has written that many
    chunks (or as soon as it says it is done)."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), name], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    for line in writer.stdout:
        if line.strip() == "done" or int(line) >= chunks_written:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)


@pytest.mark.parametrize("chunks_written", [0, 31, 63])
def test_a_writer_killed_midway_leaves_the_object_absent_or_whole(
    tmp_path: Path, chunks_written: int
) -> None:
    root = tmp_path / "blobs"
    name = name_for("acme", WHOLE)
    kill_writer_after(root, name, chunks_written)
    store = FilesystemStore(root)
    assert store.get(name) in (None, WHOLE)
    if chunks_written < 63:  # killed long before its rename: nothing to see
        assert store.get(name) is None
    # An object stored before is never replaced by half of another put of it.
    store.put(name, in_chunks(WHOLE), len(WHOLE))
    kill_writer_after(root, name, chunks_written)
    assert store.get(name) == WHOLE
    # What a killed writer leaves is a hidden temporary file, never an object.
    leftovers = [path.name for path in root.rglob("*") if path.is_file()]
    assert all(entry.startswith(".put-") for entry in leftovers if entry != name.split("/")[1])


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from ledger.blobs.stores.filesystem import FilesystemStore
from ledger.blobs.stores.names import split_name
from ledger.errors import BlobStoreUnavailable

store = FilesystemStore(Path(sys.argv[1]))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    store.put(sys.argv[2], [b"x" * (1 << 20), b"x" * (1 << 20)], 2 << 20)
except BlobStoreUnavailable as error:
    print("unavailable:", error)
"""


def test_a_disk_that_refuses_a_write_is_an_outage_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    name = name_for("acme", b"x" * (2 << 20))
    # No more than 1 MiB per file, as a full disk or a quota answers (EFBIG, like ENOSPC).
    run = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(root), name],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.startswith("unavailable: blob directory"), run.stdout + run.stderr
    assert "File too large" in run.stdout
    assert FilesystemStore(root).get(name) is None
    assert [path for path in root.rglob("*") if path.is_file()] == []


def test_a_broken_directory_is_an_outage_not_a_missing_object(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "blobs")
    name = name_for("acme", b"data")
    (tmp_path / "blobs" / "acme").write_bytes(b"a file where the tenant's directory goes")
    with pytest.raises(BlobStoreUnavailable, match=r"blob directory .*cannot write"):
        store.put(name, [b"data"], 4)
    with pytest.raises(BlobStoreUnavailable, match="cannot read"):
        store.get(name)
    with pytest.raises(BlobStoreUnavailable, match="cannot delete"):
        store.delete(name)


def test_objects_fan_out_under_their_tenant(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "blobs")
    name = name_for("acme", b"data")
    store.put(name, [b"data"], 4)
    object_part = name.split("/")[1]
    assert (tmp_path / "blobs" / "acme" / object_part[:2] / object_part).read_bytes() == b"data"
    assert store.location == (tmp_path / "blobs").resolve().as_uri()


# --- the S3 store -------------------------------------------------------------------------


def within(seconds: float, action: Callable[[], Any]) -> BlobStoreUnavailable:
    started = time.monotonic()
    with pytest.raises(BlobStoreUnavailable) as raised:
        action()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"the outage took {elapsed:.1f}s to answer"
    return raised.value


def test_an_object_larger_than_a_part_goes_up_in_parts(seaweedfs: SeaweedFS) -> None:
    store = S3Store(seaweedfs.fresh_url(), seaweedfs.options())
    data = os.urandom(PART_BYTES + 3 * MiB)
    name = name_for("acme", data)
    store.put(name, in_chunks(data, MiB), len(data))
    assert store.get(name) == data
    # A multipart upload whose source fails midway is aborted: nothing of it shows.
    other = os.urandom(2 * PART_BYTES + 1)
    with pytest.raises(SourceFailed):
        store.put(name_for("acme", other), failing(other, after=200), len(other))
    assert store.get(name_for("acme", other)) is None


def test_objects_live_under_the_prefix_the_url_names(seaweedfs: SeaweedFS) -> None:
    url = seaweedfs.fresh_url("prefixed")
    store = S3Store(url, seaweedfs.options())
    name = name_for("acme", b"data")
    store.put(name, [b"data"], 4)
    key = f"{url.removeprefix('s3://')}/{name}"
    with seaweedfs.filesystem().open_input_stream(key) as stream:
        assert stream.read() == b"data"
    assert store.location == url


def test_a_refused_connection_is_an_outage_within_seconds(
    s3_url: str, seaweedfs: SeaweedFS
) -> None:
    closed = replace(seaweedfs.options(), endpoint=f"http://127.0.0.1:{free_port()}")
    store = S3Store(s3_url, closed)
    name = name_for("acme", b"data")
    error = within(5, lambda: store.put(name, [b"data"], 4))
    assert "could not be reached" in error.detail
    assert "127.0.0.1" not in error.detail  # the endpoint goes to the log, not the answer
    within(5, lambda: store.get(name))
    within(5, lambda: store.delete(name))


@pytest.mark.slow  # three outages of three seconds each
def test_a_hung_server_is_an_outage_within_seconds_and_then_recovers(
    s3_url: str, seaweedfs: SeaweedFS
) -> None:
    store = S3Store(s3_url, seaweedfs.options())  # the default time limits
    data = os.urandom(MiB)
    stored, name = name_for("acme", b"stored"), name_for("acme", data)
    store.put(stored, [b"stored"], 6)
    with seaweedfs.paused():
        error = within(8, lambda: store.put(name, in_chunks(data), len(data)))
        within(8, lambda: store.get(stored))
        within(8, lambda: store.delete(name_for("acme", b"another")))
    assert "did not answer in time" in error.detail
    assert error.retry_after >= 1
    # Nothing acknowledged was lost, and the store works again once the server does. A put
    # that timed out may still land when the server wakes, but only whole.
    assert store.get(stored) == b"stored"
    assert store.get(name) in (None, data)
    store.put(name, in_chunks(data), len(data))
    assert store.get(name) == data


def test_wrong_credentials_are_an_outage_not_a_missing_object(
    s3_url: str, seaweedfs: SeaweedFS
) -> None:
    store = S3Store(s3_url, seaweedfs.options())
    name = name_for("acme", b"data")
    store.put(name, [b"data"], 4)
    denied = S3Store(s3_url, replace(seaweedfs.options(), secret_access_key="not-the-secret"))  # noqa: S106
    for action in (
        lambda: denied.put(name, [b"data"], 4),
        lambda: denied.get(name),
        lambda: denied.delete(name),
    ):
        error = within(5, action)
        assert "credentials" in error.detail or "HTTP 403" in error.detail, error.detail
    assert store.get(name) == b"data"


def test_a_bucket_that_does_not_exist_is_an_outage_on_read(seaweedfs: SeaweedFS) -> None:
    store = S3Store(f"s3://prov-absent-{uuid.uuid4().hex[:8]}/x", seaweedfs.options())
    with pytest.raises(BlobStoreUnavailable, match="has no such bucket"):
        store.get(name_for("acme", b"data"))


@pytest.mark.parametrize("tenant", ["acme corp", "acme/eu", "x" * 80, "..", "t-" + "0" * 64])
def test_any_tenant_name_gets_an_object_name_of_its_own_that_a_store_accepts(
    tenant: str, tmp_path: Path
) -> None:
    digest = "sha256:" + "ab" * 32
    name = object_name(tenant, digest, "k1")
    assert split_name(name)[1] == "ab" * 32 + ".k1"
    assert name.split("/")[0] != object_name("acme", digest, "k1").split("/")[0]
    store = FilesystemStore(tmp_path)
    store.put(name, [b"sealed"], 6)
    assert store.get(name) == b"sealed"
    assert len(list(tmp_path.rglob("*.k1"))) == 1
