"""The witness, `prov witness serve`, on loopback: C2SP tlog-witness from the witness's side.

Real logs, kept in memory: RFC 9162 trees over `ledger.log.merkle`, their checkpoints signed
with a `NoteSigner`, their consistency proofs cut from the tree. A witness started with the
CLI follows them. It cosigns a first checkpoint and each that extends it; it refuses with
each status the spec names (404, 403, 400, 409 as `text/x.tlog.size`, 422), and refuses a
rollback and a fork while keeping them as evidence; of concurrent requests from one size,
across threads and across two witness processes on one state file, exactly one is
cosigned; killed with -9 while cosigning, it restarts holding at least every size it
answered 200 for, and goes on from there. What it serves for monitors verifies with an
independent verifier written in Go.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ledger.keys.ed25519 import SigningKey
from ledger.log.merkle import consistency_proof_ranges, hash_leaf, root_from_leaf_hashes
from ledger.log.note import Checkpoint, NoteSigner
from ledger.witness.cosignature import CosignatureSigner, CosignatureVerifier, verified_cosignatures
from ledger.witness.protocol import MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE, encode_add_checkpoint
from tests.http_helpers import assert_problem
from tests.support import PROV, Run
from tests.witness_support import Witness, go_note_verifier, start_witness

__all__ = ["go_note_verifier"]  # the shared fixture

NAME = "witness.test/w1"


@dataclass
class MemoryLog:
    """A log whose tree is a list of leaf hashes: checkpoints and proofs on demand."""

    origin: str
    signer: NoteSigner
    leaves: list[bytes] = field(default_factory=list)
    # MTH of leaf ranges, computed once: the tests ask for the same roots many times.
    _hashes: dict[tuple[int, int], bytes] = field(default_factory=dict)

    @property
    def vkey(self) -> str:
        return self.signer.verifier.encode()

    def grow(self, count: int, tag: str = "") -> MemoryLog:
        start = len(self.leaves)
        self.leaves += [hash_leaf(f"{tag}{start + i}".encode()) for i in range(count)]
        self._hashes.clear()
        return self

    def fork(self, at: int, count: int) -> MemoryLog:
        """The same log (origin and key) with its first `at` leaves, then another tail."""
        return MemoryLog(self.origin, self.signer, self.leaves[:at]).grow(count, tag="fork")

    def root(self, size: int) -> bytes:
        return self._hash(0, size)

    def _hash(self, lo: int, hi: int) -> bytes:
        if (lo, hi) not in self._hashes:
            self._hashes[(lo, hi)] = root_from_leaf_hashes(self.leaves[lo:hi])
        return self._hashes[(lo, hi)]

    def note(self, size: int, signer: NoteSigner | None = None) -> str:
        body = Checkpoint(self.origin, size, self.root(size)).body()
        return (signer or self.signer).sign(body)

    def proof(self, old: int, new: int) -> list[bytes]:
        if old == 0:
            return []
        return [self._hash(lo, hi) for lo, hi in consistency_proof_ranges(old, new)]

    def request(
        self, old: int, size: int, *, proof: list[bytes] | None = None, note: str | None = None
    ) -> bytes:
        chosen = self.proof(old, size) if proof is None else proof
        return encode_add_checkpoint(old, chosen, note or self.note(size))


def _log(origin: str, key_name: str | None = None, leaves: int = 0) -> MemoryLog:
    return MemoryLog(origin, NoteSigner(key_name or origin, SigningKey.generate())).grow(leaves)


@dataclass
class Followed:
    """The logs the module's witness follows, one per test so that tests stay independent."""

    first: MemoryLog = field(default_factory=lambda: _log("example.com/first", leaves=64))
    refusals: MemoryLog = field(default_factory=lambda: _log("example.com/refusals", leaves=40))
    rollback: MemoryLog = field(default_factory=lambda: _log("example.com/rollback", leaves=30))
    empty: MemoryLog = field(default_factory=lambda: _log("example.com/empty", leaves=8))
    threads: MemoryLog = field(default_factory=lambda: _log("example.com/threads", leaves=80))
    # Followed under two keys (a rotation), and under a key named other than its origin.
    rotated: MemoryLog = field(default_factory=lambda: _log("example.com/rotated", leaves=9))
    new_key: NoteSigner = field(
        default_factory=lambda: NoteSigner("example.com/rotated", SigningKey.generate())
    )
    renamed: MemoryLog = field(
        default_factory=lambda: _log("example.com/renamed", "keys.example/renamed", leaves=5)
    )

    def options(self) -> list[str]:
        plain = [self.first, self.refusals, self.rollback, self.empty, self.threads, self.rotated]
        return [
            *(log.vkey for log in plain),
            self.new_key.verifier.encode(),
            f"{self.renamed.origin}={self.renamed.vkey}",
        ]


@pytest.fixture(scope="module")
def followed() -> Followed:
    return Followed()


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory, followed: Followed) -> Iterator[Witness]:
    running = start_witness(tmp_path_factory.mktemp("witness"), NAME, followed.options())
    yield running
    running.stop()


def _verifier(witness: Witness) -> CosignatureVerifier:
    return CosignatureVerifier.parse(witness.verifier_key)


def _cosigns(witness: Witness, log: MemoryLog, old: int, size: int) -> str:
    """POST the checkpoint of `size` from `old`; it must be cosigned. Returns the line."""
    answer = witness.add_checkpoint(log.request(old, size))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    [line] = answer.text.splitlines(keepends=True)
    [cosigned] = verified_cosignatures(log.note(size) + line, [_verifier(witness)])
    assert cosigned.name == NAME
    assert abs(cosigned.timestamp - time.time()) < 60
    return line


def _held(witness: Witness, log: MemoryLog) -> int:
    return int(witness.checkpoint_of(log.origin).split("\n")[1])


def _conflict_size(answer: httpx.Response) -> int:
    assert answer.status_code == 409, answer.text
    # Exactly the spec's media type and body: the size and a newline.
    assert answer.headers["content-type"] == SIZE_CONTENT_TYPE
    assert answer.text.endswith("\n"), answer.text
    assert answer.text[:-1].isdigit(), answer.text
    return int(answer.text)


def test_the_first_checkpoint_and_each_extension_are_cosigned_and_served_to_monitors(
    witness: Witness, followed: Followed, go_note_verifier: Callable[..., Run]
) -> None:
    log = followed.first
    assert witness.monitoring(log.origin).status_code == 404  # nothing cosigned yet
    line = _cosigns(witness, log, 0, 10)
    served = witness.checkpoint_of(log.origin)
    # The checkpoint, the log's signature the witness verified, and the cosignature it gave.
    assert served == log.note(10) + line
    for old, size in ((10, 10), (10, 13), (13, 32), (32, 64)):
        _cosigns(witness, log, old, size)
    served = witness.checkpoint_of(log.origin)
    assert served.startswith(log.note(64))
    assert len(verified_cosignatures(served, [_verifier(witness)])) == 1

    # An independent implementation (Go's sumdb/note) accepts the log's signature and the
    # cosignature, and refuses the checkpoint once its size is altered.
    checked = go_note_verifier(log.vkey, [witness.verifier_key], served)
    assert checked.code == 0, checked.err
    assert f"verified {NAME}+" in checked.out
    altered = go_note_verifier(log.vkey, [witness.verifier_key], served.replace("\n64\n", "\n65\n"))
    assert altered.code == 1
    # A cosignature line with one byte changed is refused too, by name.
    cosignature = served.splitlines()[-1]
    blob = bytearray(base64.b64decode(cosignature.split(" ")[2]))
    blob[-1] ^= 1
    bad_line = f"{' '.join(cosignature.split(' ')[:2])} {base64.b64encode(bytes(blob)).decode()}"
    forged = go_note_verifier(
        log.vkey, [witness.verifier_key], served.replace(cosignature, bad_line)
    )
    assert forged.code == 1
    assert f"invalid signature for key {NAME}+" in forged.err

    [shown] = [row for row in witness.show() if row["origin"] == log.origin]
    assert shown["size"] == 64
    assert shown["root"] == base64.b64encode(log.root(64)).decode()
    assert str(shown["cosigned_at"]).startswith(time.strftime("%Y-", time.gmtime()))


def test_every_refusal_has_the_status_the_spec_names(witness: Witness, followed: Followed) -> None:
    log = followed.refusals
    _cosigns(witness, log, 0, 20)

    # 404: an origin the witness does not follow.
    stranger = _log("example.com/stranger", leaves=3)
    assert_problem(witness.add_checkpoint(stranger.request(0, 3)), 404, "witness-unknown-log")

    # 403: signed only by another key of the same name; only by keys the witness ignores (a
    # cosignature); or by the trusted key over another body.
    impostor = NoteSigner(log.origin, SigningKey.generate())
    refused = witness.add_checkpoint(log.request(20, 25, note=log.note(25, impostor)))
    assert_problem(refused, 403, "witness-untrusted")
    body = Checkpoint(log.origin, 25, log.root(25)).body()
    only_cosigned = (
        body
        + "\n"
        + CosignatureSigner("other.example", SigningKey.generate()).cosign(body, int(time.time()))
    )
    refused = witness.add_checkpoint(log.request(20, 25, note=only_cosigned))
    assert_problem(refused, 403, "witness-untrusted")
    tampered = log.note(25).replace("\n25\n", "\n26\n", 1)
    refused = witness.add_checkpoint(log.request(20, 26, note=tampered))
    assert "does not verify" in assert_problem(refused, 403, "witness-untrusted")["detail"]

    # 400: malformed requests, and an old size above the checkpoint's.
    note = log.note(25)
    for malformed in (
        b"old 20\n" + note.encode(),  # no blank line before the checkpoint
        b"old 020\n\n" + note.encode(),  # a leading zero
        b"old 20\nnot base64!\n\n" + note.encode(),
        b"old 20\n\n" + note.replace("\n25\n", "\n+25\n").encode(),
        b"old 20\n\n" + log.note(25).split("\n\n")[0].encode() + b"\n",  # no signature
        b"\xff\xfe",
    ):
        assert_problem(witness.add_checkpoint(malformed), 400, "witness-bad-request")
    refused = witness.add_checkpoint(log.request(30, 25, proof=[]))
    assert "above the checkpoint's size" in assert_problem(refused, 400)["detail"]

    # 409: an old size that is not the witness's; the body is its size, and nothing else.
    assert _conflict_size(witness.add_checkpoint(log.request(10, 25))) == 20
    assert _conflict_size(witness.add_checkpoint(log.request(0, 25))) == 20

    # 422: a proof that does not verify; another root at the same size; a proof from
    # another tree (a fork that grew past the witness's size).
    wrong = [hashlib.sha256(b"%d" % i).digest() for i in range(len(log.proof(20, 25)))]
    refused = witness.add_checkpoint(log.request(20, 25, proof=wrong))
    assert_problem(refused, 422, "witness-inconsistent")
    fork = log.fork(at=15, count=25)
    refused = witness.add_checkpoint(fork.request(20, 20, proof=[]))
    assert "fork" in assert_problem(refused, 422, "witness-inconsistent")["detail"]
    refused = witness.add_checkpoint(fork.request(20, 40))
    assert_problem(refused, 422, "witness-inconsistent")

    # Nothing refused moved the witness, which still cosigns the real log from 20.
    assert _held(witness, log) == 20
    _cosigns(witness, log, 20, 40)
    assert _held(witness, log) == 40

    # The validly signed refusals are kept as evidence: the fork's two, the wrong proof.
    kept = [row for row in witness.show("--refused") if row["origin"] == log.origin]
    assert sorted((row["old_size"], row["size"], row["status"]) for row in kept) == [
        (20, 20, 422),
        (20, 25, 422),
        (20, 40, 422),
    ]
    fork_note = next(row["note"] for row in kept if row["size"] == 40)
    assert fork_note == fork.note(40)
    [shown] = [row for row in witness.show() if row["origin"] == log.origin]
    assert shown["refused"] == 3


def test_a_size_zero_checkpoint_must_be_the_empty_tree_and_needs_no_proof(
    witness: Witness, followed: Followed
) -> None:
    log = followed.empty
    # Size 0 with a root that is not SHA-256 of nothing.
    body = Checkpoint(log.origin, 0, log.root(1)).body()
    refused = witness.add_checkpoint(encode_add_checkpoint(0, [], log.signer.sign(body)))
    assert "empty tree" in assert_problem(refused, 422, "witness-inconsistent")["detail"]
    # From old size 0 the proof must be empty.
    refused = witness.add_checkpoint(log.request(0, 8, proof=[log.root(4)]))
    assert_problem(refused, 422, "witness-inconsistent")
    assert witness.monitoring(log.origin).status_code == 404
    _cosigns(witness, log, 0, 0)  # the empty tree is a checkpoint like any other
    _cosigns(witness, log, 0, 8)
    assert _held(witness, log) == 8


def test_a_rollback_is_refused_and_named_and_the_witness_keeps_its_size(
    witness: Witness, followed: Followed
) -> None:
    log = followed.rollback
    _cosigns(witness, log, 0, 30)
    # The log, gone back to 12, asks from the size it believes: told the witness's size.
    assert _conflict_size(witness.add_checkpoint(log.request(12, 12))) == 30
    # From the witness's own size, the smaller checkpoint is a 400 that says rollback.
    refused = witness.add_checkpoint(log.request(30, 12, proof=[]))
    detail = assert_problem(refused, 400, "witness-bad-request")["detail"]
    assert detail.startswith("rollback:")
    assert "size 12 is below the size 30" in detail
    assert _held(witness, log) == 30
    [kept] = [row for row in witness.show("--refused") if row["origin"] == log.origin]
    assert (kept["old_size"], kept["size"], kept["status"]) == (30, 12, 400)
    # The same rollback again is counted, not stored twice.
    witness.add_checkpoint(log.request(30, 12, proof=[]))
    [kept] = [row for row in witness.show("--refused") if row["origin"] == log.origin]
    assert kept["times"] == 2


def test_a_rotated_key_and_an_origin_other_than_the_key_name(
    witness: Witness, followed: Followed
) -> None:
    log = followed.rotated
    _cosigns(witness, log, 0, 4)
    # Signed with the new key only: the witness follows the origin under both.
    rotated = log.note(9, followed.new_key)
    answer = witness.add_checkpoint(log.request(4, 9, note=rotated))
    assert answer.status_code == 200, answer.text
    assert witness.checkpoint_of(log.origin).startswith(rotated)
    # `ORIGIN=VKEY`: a log whose key is named otherwise is followed under its origin.
    renamed = followed.renamed
    answer = witness.add_checkpoint(renamed.request(0, 5))
    assert answer.status_code == 200, answer.text
    assert _held(witness, renamed) == 5


def test_concurrent_requests_from_one_size_cosign_exactly_one(
    witness: Witness, followed: Followed, tmp_path: Path
) -> None:
    log = followed.threads
    _cosigns(witness, log, 0, 10)
    # A second witness process on the same state file: the lock is SQLite's, not the app's.
    (tmp_path / "twin").mkdir()
    shutil.copy(witness.key_file, tmp_path / "twin" / "witness.key")
    twin = start_witness(tmp_path / "twin", NAME, followed.options(), state_file=witness.state)
    try:
        sizes_seen: list[int] = []
        for old, sizes in ((10, range(11, 31)), (None, range(31, 61)), (None, range(61, 81))):
            start = _held(witness, log) if old is None else old
            barrier = threading.Barrier(len(sizes))

            def submit(size: int, start: int = start, barrier: threading.Barrier = barrier) -> int:
                target = (witness, twin)[size % 2]
                body = log.request(start, size)
                barrier.wait()
                return target.add_checkpoint(body).status_code

            with ThreadPoolExecutor(len(sizes)) as pool:
                statuses = dict(zip(sizes, pool.map(submit, sizes), strict=True))
            winners = [size for size, status in statuses.items() if status == 200]
            assert len(winners) == 1, statuses
            assert sorted(set(statuses.values())) == [200, 409], statuses
            held = _held(witness, log)
            assert held == winners[0] == _held(twin, log)
            sizes_seen.append(held)
            # Every loser is told the winner's size.
            loser = next(size for size, status in statuses.items() if status == 409)
            assert _conflict_size(witness.add_checkpoint(log.request(start, loser))) == held
        assert sizes_seen == sorted(sizes_seen)  # the stored size never went down
    finally:
        twin.stop()


def test_killed_while_cosigning_it_restarts_holding_every_size_it_answered_for(
    tmp_path: Path,
) -> None:
    log = _log("example.com/crash", leaves=1000)
    witness = start_witness(tmp_path, NAME, [log.vkey])
    answered: list[int] = []
    known = [0]
    stop = threading.Event()

    def keep_submitting(worker: int) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                old = known[0]
                size = min(old + 1 + worker, len(log.leaves))
                try:
                    answer = witness.add_checkpoint(log.request(old, size), client)
                except httpx.TransportError:
                    return  # the witness is gone
                if answer.status_code == 200:
                    answered.append(size)
                    known[0] = max(known[0], size)
                elif answer.status_code == 409:
                    known[0] = max(known[0], int(answer.text))

    try:
        threads = [threading.Thread(target=keep_submitting, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        witness.kill()  # mid-flight: requests are being answered as it dies
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
        assert len(answered) >= 40, "too few cosignatures before the kill"

        witness.start()
        held = _held(witness, log)
        assert held >= max(answered)
        assert held < len(log.leaves)
        # It goes on from the size it holds.
        answer = witness.add_checkpoint(log.request(held, len(log.leaves)))
        assert answer.status_code == 200, answer.text
        assert _held(witness, log) == len(log.leaves)
    finally:
        stop.set()
        witness.stop()


def test_the_monitoring_path_the_body_cap_and_health(witness: Witness) -> None:
    assert httpx.get(f"{witness.url}/healthz").status_code == 200
    unknown = httpx.get(f"{witness.url}/{hashlib.sha256(b'nobody').hexdigest()}/checkpoint")
    assert_problem(unknown, 404)
    assert_problem(httpx.get(f"{witness.url}/NOT-A-HASH/checkpoint"), 404)
    too_large = witness.add_checkpoint(b"old 0\n\n" + b"x" * MAX_REQUEST_BYTES)
    assert_problem(too_large, 413)
    assert_problem(httpx.get(f"{witness.url}/add-checkpoint"), 405)


def test_the_key_command_creates_a_private_key_and_prints_the_served_key(
    witness: Witness, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}

    def key(name: str, key_file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PROV, "witness", "key", "--name", name, "--key-file", str(key_file)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    # The running witness's own key file gives the key it printed when it started.
    assert key(NAME, witness.key_file).stdout.strip() == witness.verifier_key
    assert witness.key_file.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new" / "witness.key"
    made = key("w2.example", fresh)
    assert made.returncode == 0, made.stderr
    assert fresh.stat().st_mode & 0o777 == 0o600
    assert fresh.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    verifier = CosignatureVerifier.parse(made.stdout.strip())
    assert verifier.name == "w2.example"
    assert key("w2.example", fresh).stdout == made.stdout  # kept, not replaced
    bad = key("has space", fresh)
    assert bad.returncode == 2
    assert bad.stderr.startswith("prov: --name:")
    missing = subprocess.run(
        [PROV, "witness", "show", "--state", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("prov: --state: no witness state at")
    assert len(missing.stderr.splitlines()) == 1
