"""`prov audit --from-published`: the checkpoints a server published, followed and checked.

The server publishes itself (`PROV_PUBLISH_CHECKPOINTS`, its checkpoint follower) to a
directory, or to S3 on SeaweedFS; the auditor reads the target and asks the same real
server for consistency proofs. A deleted, rewritten or missing publication is named; a
validly signed fork (a second ledger sharing the key) fails a consistency proof, or the
one-root-per-size rule when no server is asked.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.errors import AuditFailed, WitnessPolicyUnmet
from ledger.ledger import Ledger
from ledger.log.note import Checkpoint, parse_note
from ledger.log.receipt import Receipt
from ledger.publication import PublishedCheckpoint, name_of, open_publisher, read_published
from ledger.publication.directory import DirectoryTarget
from ledger.storage.db import make_engine
from query.audit.auditor import load_state
from query.audit.published import audit_published
from tests.http_server import Server, prepared_server
from tests.s3_server import SeaweedFS
from tests.support import Run, demo_envelopes
from tests.test_audit_witnesses import KEY1, KEY2, W1, W2, append, cosign, run_prov, verifier_key


def size_of(note: str) -> int:
    return Checkpoint.parse_body(parse_note(note).body).size


def wait_published(
    target: str, size: int, s3: object = None, timeout: float = 30.0
) -> list[PublishedCheckpoint]:
    """The published checkpoints once the server has published one of `size`."""
    deadline = time.monotonic() + timeout
    while True:
        published = read_published(target, s3)  # type: ignore[arg-type]
        if published and size_of(published[-1].note) >= size:
            return published
        assert time.monotonic() < deadline, f"nothing of size {size} published at {target}"
        time.sleep(0.05)


def grow(server: Server, client: httpx.Client, target: str, count: int, seed: int) -> int:
    """Append `count` records and wait until the server has published the new size."""
    append(server, count, seed)
    size = size_of(client.get("/checkpoint").text)
    wait_published(target, size)
    return size


PUBLISH_FAST = {"PROV_WITNESS_INTERVAL_SECONDS": "0.05"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("publishing")
    started = prepared_server(
        str(directory / "ledger.db"),
        directory,
        PROV_PUBLISH_CHECKPOINTS=str(directory / "published"),
        **PUBLISH_FAST,
    )
    append(started, 4, seed=21)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.auth(server.admin_key)) as http:
        yield http


def audit_cli(server: Server, state: Path, target: str, *extra: str, url: bool = True) -> Run:
    where = ["--url", server.url, "--api-key", server.admin_key] if url else []
    return run_prov("audit", "--from-published", target, "--state", str(state), *where, *extra)


def test_the_published_log_is_followed_and_every_tampering_is_named(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    target = server.extra_env["PROV_PUBLISH_CHECKPOINTS"]
    folder = Path(target) / "checkpoints"
    for seed in (22, 23):
        grow(server, client, target, 3, seed)
    state = tmp_path / "state.json"
    key = verifier_key(server)

    first = audit_cli(server, state, target, "--verifier-key", key)
    assert first.code == 0, first.err
    count = len(read_published(target))
    assert f"ok: {count} published checkpoints at {target} ({count} new)" in first.out
    assert "consistent with each other; first checkpoint trusted" in first.out

    trusted_size = grow(server, client, target, 2, 24)
    again = audit_cli(server, state, target)
    assert again.code == 0, again.err
    assert "(1 new)" in again.out
    assert f"size {trusted_size}" in again.out
    assert "consistent with each other and with the trusted size" in again.out
    seen = state.read_bytes()

    # Rewritten: the same checkpoint, still validly signed, with one more line.
    rewritten = folder / name_of(1)
    original = rewritten.read_bytes()
    rewritten.chmod(0o644)
    rewritten.write_bytes(cosign(original.decode(), W1).encode())
    refused = audit_cli(server, state, target)
    assert refused.code == 1
    assert refused.err.startswith(
        f"prov: audit-failed: published checkpoint {name_of(1)} was rewritten at {target}"
    )
    assert state.read_bytes() == seen
    rewritten.write_bytes(original)

    # Deleted: the newest one seen.
    newest = folder / name_of(count)
    kept = newest.read_bytes()
    newest.unlink()
    refused = audit_cli(server, state, target)
    assert refused.code == 1
    assert f"published checkpoint {name_of(count)} was deleted from {target}" in refused.err
    assert state.read_bytes() == seen
    DirectoryTarget(Path(target)).create(name_of(count), kept)

    # A gap among checkpoints not seen yet.
    grow(server, client, target, 1, 25)
    newest_size = grow(server, client, target, 1, 26)
    missing = folder / name_of(count + 1)
    kept = missing.read_bytes()
    missing.unlink()
    refused = audit_cli(server, state, target, url=False)  # no proof needed to see a gap
    assert refused.code == 1
    assert (
        f"published checkpoint {name_of(count + 1)} is missing from {target}: the sequence has "
        f"a gap before {name_of(count + 2)}"
    ) in refused.err
    assert state.read_bytes() == seen
    DirectoryTarget(Path(target)).create(name_of(count + 1), kept)

    # Without a server: no consistency proofs, and the trusted checkpoint stays.
    offline = audit_published(state, target)
    assert "consistency not checked (no --url)" in offline.summary()
    assert f"the trusted checkpoint stays at size {trusted_size}" in offline.summary()
    after = load_state(state)
    assert after is not None
    assert after.tree_size == trusted_size
    assert after.published is not None
    assert len(after.published.digests) == count + 3
    online = audit_published(state, target, client=client)
    assert "(0 new)" in online.summary()
    assert online.trusted_size == newest_size
    final = load_state(state)
    assert final is not None
    assert final.tree_size == newest_size
    assert final.published is not None
    assert final.published.linked == count + 2


def fork_of(server: Server, directory: Path) -> Ledger:
    """A second ledger with the same key and origin: a copy of the server's as it is now."""
    directory.mkdir()
    with sqlite3.connect(server.db_url) as source:
        source.execute(f"VACUUM INTO '{directory / 'ledger.db'}'")
    shutil.copy(server.key_file, directory / "ledger.key")
    return Ledger.open(make_engine(str(directory / "ledger.db")), directory / "ledger.key")


def test_a_validly_signed_fork_is_refused(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    common = client.get("/checkpoint").text
    other = fork_of(server, tmp_path / "fork")
    try:
        assert all(
            isinstance(r, Receipt) for r in other.append(demo_envelopes(other.engine, 3, seed=31))
        )
        forked = other.latest_checkpoint().note
    finally:
        other.close()
    append(server, 3, seed=32)
    honest = client.get("/checkpoint").text
    assert size_of(honest) == size_of(forked)
    key = verifier_key(server)

    # The fork published after the common checkpoint: the server's proof does not link them.
    target = tmp_path / "forked"
    publisher = open_publisher(str(target))
    publisher.publish(size_of(common), common)
    publisher.publish(size_of(forked), forked)
    with pytest.raises(AuditFailed, match=f"{name_of(1)} .* does not extend {name_of(0)}"):
        audit_published(tmp_path / "a.json", str(target), client=client, verifier_key=key)
    assert not (tmp_path / "a.json").exists()
    # With no server to ask, the honest checkpoint of the same size exposes it.
    DirectoryTarget(target).create(name_of(2), honest.encode())
    with pytest.raises(AuditFailed, match=r"both have size .* different roots"):
        audit_published(tmp_path / "a.json", str(target), verifier_key=key)

    # Seen honest, then replaced by the validly signed fork: a rewrite.
    target = tmp_path / "replaced"
    publisher = open_publisher(str(target))
    publisher.publish(size_of(common), common)
    publisher.publish(size_of(honest), honest)
    state = tmp_path / "b.json"
    audit_published(state, str(target), client=client, verifier_key=key)
    replaced = target / "checkpoints" / name_of(1)
    replaced.chmod(0o644)
    replaced.write_text(forked)
    with pytest.raises(AuditFailed, match=f"published checkpoint {name_of(1)} was rewritten"):
        audit_published(state, str(target), client=client)


def test_a_witness_policy_holds_for_published_checkpoints(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    note = client.get("/checkpoint").text
    key = verifier_key(server)
    plain = tmp_path / "plain"
    open_publisher(str(plain)).publish(size_of(note), note)
    state = tmp_path / "state.json"
    with pytest.raises(WitnessPolicyUnmet, match=f"published checkpoint {name_of(0)}: "):
        audit_published(state, str(plain), client=client, verifier_key=key, witnesses=[KEY1])
    assert not state.exists()

    witnessed = tmp_path / "witnessed"
    open_publisher(str(witnessed)).publish(size_of(note), cosign(note, W1, W2))
    result = audit_published(
        state, str(witnessed), client=client, verifier_key=key, witnesses=[KEY1, KEY2]
    )
    assert result.summary().endswith(
        "the newest cosigned by 2 of 2 witnesses (w1.example, w2.example)"
    )
    # The state file follows one target.
    with pytest.raises(AuditFailed, match="use another state file"):
        audit_published(state, str(plain), client=client)


def test_published_to_s3_the_log_is_followed(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    url = seaweedfs.fresh_url("published")
    server = prepared_server(
        str(tmp_path / "ledger.db"),
        tmp_path,
        PROV_PUBLISH_CHECKPOINTS=url,
        **PUBLISH_FAST,
        **seaweedfs.env(),
    )
    append(server, 3, seed=41)
    server.start()
    try:
        wait_published(url, 3, seaweedfs.options())
        append(server, 2, seed=42)
        wait_published(url, 5, seaweedfs.options())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
        env |= seaweedfs.env()
        state = tmp_path / "state.json"
        args = ["audit", "--from-published", url, "--state", str(state), "--url", server.url]
        args += ["--api-key", server.admin_key, "--verifier-key", verifier_key(server)]
        followed = run_prov(*args, env=env)
        assert followed.code == 0, followed.err
        assert f"published checkpoints at {url} (" in followed.out
        assert "size 5" in followed.out
        assert "consistent with each other; first checkpoint trusted" in followed.out

        base = url.removeprefix("s3://")
        seaweedfs.filesystem().delete_file(f"{base}/checkpoints/{name_of(0)}")
        deleted = run_prov(*args, env=env)
        assert deleted.code == 1
        assert f"published checkpoint {name_of(0)} was deleted from {url}" in deleted.err
    finally:
        server.stop()
