"""The ledger as one object: its database, its origin and its signing keys.

This is the surface the CLI, the HTTP service and the tests use. It wires admission, the
sequencer, receipts, proofs and verification together and holds no logic of its own
beyond that wiring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, insert

from ledger._parallel import WorkerPool
from ledger.admission import DEFAULT_MAX_RECORD_BYTES, Admitted, admit_batch
from ledger.blobs.kek import default_kek_path, ensure_kek, load_kek
from ledger.blobs.stores.base import ObjectStore
from ledger.blobs.stores.database import DatabaseStore
from ledger.blobs.subject_keys import (
    SubjectKeys,
    default_subject_keys_path,
    key_store_holds_keys,
)
from ledger.blobs.vault import BlobVault
from ledger.erasure.eraser import Erasures
from ledger.erasure.rulebook import RuleBook
from ledger.errors import LedgerNotInitialized, RecordRejected
from ledger.keys import ed25519 as _ed25519
from ledger.keys.replay_signing import ReplaySigner, default_replay_key_path
from ledger.log import merkle
from ledger.log.entry import from_micros
from ledger.log.note import NoteSigner, NoteVerifier
from ledger.log.receipt import Receipt, issue_receipt
from ledger.log.sequencer import (
    Appended,
    Frontier,
    MadeBatch,
    append_isolated,
    append_made,
    now_micros,
    store_checkpoint,
)
from ledger.log.store import StoredCheckpoint, latest_checkpoint, read_info
from ledger.log.verify import VerifyReport, verify_log
from ledger.monitors.apply import Planned
from ledger.monitors.apply import plan as plan_monitors
from ledger.monitors.live import LiveMonitors
from ledger.records.decision import Decision
from ledger.records.monitor import MonitorDefinition
from ledger.records.policy import PolicyCheckRecord
from ledger.records.replay import ReplayRecord
from ledger.storage.db import write_transaction
from ledger.storage.migrate import migrate
from ledger.storage.schema import ledger_info
from ledger.witness.cosigned import served_checkpoint

DEFAULT_ORIGIN = "prov.local/ledger"


def ensure_key(path: Path) -> _ed25519.SigningKey:
    """Load a key of the ledger, creating it first if the file does not exist."""
    if not path.exists():
        # Another process may create it first; then theirs is the key.
        with contextlib.suppress(FileExistsError):
            _ed25519.save_signing_key(_ed25519.SigningKey.generate(), path)
    return _ed25519.load_signing_key(path)


@dataclass
class Ledger:
    engine: Engine
    origin: str
    signer: NoteSigner
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    # Signature checks and receipt signing run in libsodium, which releases the GIL.
    pool: WorkerPool = field(default_factory=WorkerPool)
    frontier: Frontier = field(default_factory=Frontier)
    # Signs replay records (`ledger.keys.replay_signing`); None when its file does not exist.
    replay_signer: ReplaySigner | None = None
    replay_key_path: Path | None = None
    # Where blob bytes live (None: the database) and, outside the database, the
    # key-encryption key and the subjects' data keys (`ledger.blobs`).
    blob_store: ObjectStore | None = None
    kek_path: Path | None = None
    # A SQLite file path or a PostgreSQL URL (`ledger.blobs.subject_keys`), as text.
    subject_keys_file: str | None = None
    # The monitors' windows, in step with the log (`ledger.monitors.live`).
    monitors: LiveMonitors = field(init=False)

    def __post_init__(self) -> None:
        signer = self.replay_signer
        self.monitors = LiveMonitors(None if signer is None else signer.sign_breach)

    @cached_property
    def blobs(self) -> BlobVault:
        """The blob vault; its key-encryption key is read on first use, so commands that
        never touch a blob do not need it."""
        if self.kek_path is None or self.subject_keys_file is None:
            raise LedgerNotInitialized("this ledger was opened without its blob keys")
        keys = SubjectKeys(self.subject_keys_file, load_kek(self.kek_path))
        return BlobVault(self.engine, self.blob_store or DatabaseStore(self.engine), keys)

    @classmethod
    def init(
        cls,
        engine: Engine,
        key_path: Path,
        origin: str = DEFAULT_ORIGIN,
        *,
        replay_key_path: Path | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        blob_store: ObjectStore | None = None,
        kek_path: Path | None = None,
        subject_keys_file: Path | str | None = None,
    ) -> Ledger:
        """Create or migrate the schema, create the keys if missing, and fix the log's origin
        on first use. Safe to run again: an existing log keeps its origin.

        The replay key is at `replay_key_path`, the key-encryption key at `kek_path` and the
        subjects' data keys in `subject_keys_file` (a SQLite file, or a PostgreSQL URL of a
        database of their own), by default all next to the ledger key."""
        migrate(engine)
        key = ensure_key(key_path)
        ensure_key(replay_key_path or default_replay_key_path(key_path))
        kek = kek_path or default_kek_path(key_path)
        keys = subject_keys_file or default_subject_keys_path(key_path)
        if not kek.exists() and key_store_holds_keys(keys):
            # A new KEK would open none of them: a missing mount or a wrong path, not a
            # first start. Refuse rather than strand every blob.
            raise LedgerNotInitialized(
                f"key-encryption key {kek} is missing but {keys} holds data keys it wrapped; "
                "restore the KEK file (or fix PROV_KEK_FILE)"
            )
        ensure_kek(kek)
        with write_transaction(engine) as connection:
            stored_origin = read_info(connection, "origin")
            if stored_origin is None:
                signer = NoteSigner(origin, key)
                connection.execute(
                    insert(ledger_info),
                    [
                        {"name": "origin", "value": origin},
                        {"name": "verifier_key", "value": signer.verifier.encode()},
                    ],
                )
                store_checkpoint(connection, merkle.CompactRange(), signer, origin, now_micros())
        return cls.open(
            engine,
            key_path,
            replay_key_path=replay_key_path,
            max_record_bytes=max_record_bytes,
            blob_store=blob_store,
            kek_path=kek_path,
            subject_keys_file=subject_keys_file,
        )

    @classmethod
    def open(
        cls,
        engine: Engine,
        key_path: Path,
        *,
        replay_key_path: Path | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        blob_store: ObjectStore | None = None,
        kek_path: Path | None = None,
        subject_keys_file: Path | str | None = None,
    ) -> Ledger:
        """Open an initialized ledger. Its replay key (by default next to the ledger key)
        is needed only to append replays."""
        with engine.connect() as connection:
            try:
                origin = read_info(connection, "origin")
            except sqlalchemy.exc.DBAPIError:  # no table yet: the schema was never created
                origin = None
        if origin is None:
            raise LedgerNotInitialized("the ledger is not initialized; run `prov init`")
        if not key_path.exists():
            raise LedgerNotInitialized(f"ledger key {key_path} is missing; run `prov init`")
        signer = NoteSigner(origin, _ed25519.load_signing_key(key_path))
        replay_path = replay_key_path or default_replay_key_path(key_path)
        replay_signer = (
            ReplaySigner(_ed25519.load_signing_key(replay_path)) if replay_path.exists() else None
        )
        return cls(
            engine,
            origin,
            signer,
            max_record_bytes,
            replay_signer=replay_signer,
            replay_key_path=replay_path,
            blob_store=blob_store,
            kek_path=kek_path or default_kek_path(key_path),
            subject_keys_file=str(subject_keys_file or default_subject_keys_path(key_path)),
        )

    @property
    def verifier(self) -> NoteVerifier:
        return self.signer.verifier

    def admit(self, raws: Sequence[bytes]) -> list[Admitted | RecordRejected]:
        return admit_batch(
            self.engine,
            raws,
            max_bytes=self.max_record_bytes,
            pool=self.pool,
            # A lambda, so that the vault (and its KEK) is opened only when a batch holds a
            # policy document stored as a blob.
            blobs=lambda wanted: self.blobs.find_many(wanted),  # noqa: PLW0108
        )

    def append(self, raws: Sequence[bytes]) -> list[Receipt | RecordRejected]:
        """Admit and append a batch in one transaction; results line up with `raws`."""
        return self.sequence(self.admit(raws))

    def append_many(
        self, batches: Iterable[Sequence[bytes]]
    ) -> Iterator[list[Receipt | RecordRejected]]:
        """`append` for each batch, admitting the next batch while the previous one commits.

        Each batch is still its own transaction, and its results are yielded only after it
        has committed; the overlap hides the commit's fsync behind signature checks.
        """
        with ThreadPoolExecutor(1, thread_name_prefix="prov-sequencer") as sequencer:
            pending: Future[list[Receipt | RecordRejected]] | None = None
            for raws in batches:
                admitted = self.admit(raws)
                if pending is not None:
                    yield pending.result()
                pending = sequencer.submit(self.sequence, admitted)
            if pending is not None:
                yield pending.result()

    def append_replays(self, records: Sequence[ReplayRecord]) -> list[Receipt | RecordRejected]:
        """Sign replays with the replay key and append them like any record, in one
        transaction; results line up with `records`. The key is registered for each
        tenant first, if it is not already."""
        signer = self._replay_signer_for(record.tenant for record in records)
        return self.append(self.pool.map(signer.sign, records))

    def append_policy_checks(
        self, records: Sequence[PolicyCheckRecord]
    ) -> list[Receipt | RecordRejected]:
        """Sign policy checks with the replay key, as replays are, and append them in one
        transaction; results line up with `records`."""
        signer = self._replay_signer_for(record.tenant for record in records)
        return self.append(self.pool.map(signer.sign_policy_check, records))

    def attest_decisions(self, decisions: Sequence[Decision]) -> list[bytes]:
        """Sign decisions the ledger built from unsigned input (OTLP spans) with the record
        key, which is registered for each tenant first; append them like any record."""
        signer = self._replay_signer_for(decision.tenant for decision in decisions)
        return self.pool.map(signer.sign_decision, decisions)

    def _replay_signer_for(self, tenants: Iterable[str]) -> ReplaySigner:
        """The replay key, registered for each of `tenants` first if it is not already."""
        signer = self.record_signer()
        signer.register(self.engine, tenants)
        return signer

    def record_signer(self) -> ReplaySigner:
        """The record key (`ledger.keys.replay_signing`), which signs what the ledger makes."""
        if self.replay_signer is None:
            raise LedgerNotInitialized(
                f"replay key {self.replay_key_path} is missing; run `prov init`"
            )
        return self.replay_signer

    def append_made(self, make: Callable[[Connection], MadeBatch]) -> list[Appended]:
        """Append records the ledger makes, decided under the log's lock
        (`ledger.log.sequencer.append_made`)."""
        return append_made(
            self.engine, make, self.signer, self.origin, self.frontier, self.monitors
        )

    @cached_property
    def erasures(self) -> Erasures:
        """Erasure requests: subjects, named blobs, expiry (`ledger.erasure.eraser`)."""
        return Erasures(self)

    @cached_property
    def rules(self) -> RuleBook:
        """Retention rules and legal holds (`ledger.erasure.rulebook`)."""
        return RuleBook(self)

    def apply_monitors(
        self, definitions: Sequence[MonitorDefinition], *, applied_by: str
    ) -> list[tuple[Planned, Receipt | RecordRejected | None]]:
        """Append a monitor record, signed with the record key, for each definition that
        differs from its latest version; an unchanged one gets no record (None)."""
        with self.engine.connect() as connection:
            planned = plan_monitors(
                connection, definitions, applied_by=applied_by, applied_at=from_micros(now_micros())
            )
        changed = [item.record for item in planned if item.record is not None]
        signer = self._replay_signer_for(record.tenant for record in changed)
        results = iter(self.append([signer.sign_monitor(record) for record in changed]))
        return [(item, None if item.record is None else next(results)) for item in planned]

    def append_replay(self, record: ReplayRecord) -> Receipt:
        """Sign and append one replay; its `RecordRejected` is raised."""
        [result] = self.append_replays([record])
        if isinstance(result, RecordRejected):
            raise result
        return result

    def sequence(self, admitted: list[Admitted | RecordRejected]) -> list[Receipt | RecordRejected]:
        """Append what admission accepted in one transaction and sign the receipts; rejects
        pass through in place, so results line up with `admitted`."""
        accepted = [item for item in admitted if isinstance(item, Admitted)]
        outcomes = iter(
            append_isolated(
                self.engine, accepted, self.signer, self.origin, self.frontier, self.monitors
            )
            if accepted
            else []
        )
        merged = [item if isinstance(item, RecordRejected) else next(outcomes) for item in admitted]
        return self.pool.map(self._receipt, merged)

    def _receipt(self, outcome: Appended | RecordRejected) -> Receipt | RecordRejected:
        if isinstance(outcome, RecordRejected):
            return outcome
        return issue_receipt(outcome, self.signer, self.origin)

    def latest_checkpoint(self) -> StoredCheckpoint:
        with self.engine.connect() as connection:
            checkpoint = latest_checkpoint(connection)
        if checkpoint is None:
            raise LedgerNotInitialized("the ledger has no checkpoint; run `prov init`")
        return checkpoint

    def served_checkpoint(
        self, quorum: int = 0, witnesses: tuple[str, ...] = ()
    ) -> StoredCheckpoint:
        """The checkpoint to hand out, with its witnesses' cosignatures: the newest that
        `quorum` of `witnesses` cosigned (`ledger.witness.cosigned.served_checkpoint`)."""
        with self.engine.connect() as connection:
            checkpoint = served_checkpoint(connection, quorum, witnesses)
        if checkpoint is None:
            raise LedgerNotInitialized("the ledger has no checkpoint; run `prov init`")
        return checkpoint

    def verify(
        self, *, signatures: bool = False, verifier: NoteVerifier | None = None
    ) -> VerifyReport:
        return verify_log(
            self.engine,
            verifier or self.verifier,
            self.origin,
            signatures=signatures,
            pool=self.pool,
            processes=self.pool.workers,
        )

    def close(self) -> None:
        self.pool.close()
        self.engine.dispose()
