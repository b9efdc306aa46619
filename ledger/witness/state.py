"""The witness's durable state: per log origin, the latest checkpoint it cosigned (SQLite).

C2SP tlog-witness asks a witness to remember one thing per log: the checkpoint it last
cosigned. Two rules make that memory worth anything:

- The check of a request's old size against the stored size and the update to the new one
  are one atomic step, across threads and processes. Otherwise two requests from the same
  size interleave and the second write rolls the stored size back (the race the spec
  spells out). `WitnessState.advance` runs the whole decision inside one
  `BEGIN IMMEDIATE` transaction: SQLite's single writer lock is taken before the row is
  read, so every other writer waits until this one has committed.
- The new checkpoint is on disk before the cosignature leaves: the journal is a WAL with
  `synchronous=FULL`, so a commit is fsynced before `advance` returns, and a witness
  killed after answering 200 still holds at least the size it answered for.

Checkpoints the witness refused although the log validly signed them (a proof that does
not verify, another root at the same size, a rollback) are kept in a second table, a
bounded number per origin: they are the evidence that the log forked or went back.

Tree sizes are uint64 in C2SP and SQLite's integers are signed 64-bit, so sizes are stored
as their decimal text; every comparison happens in Python on the parsed value.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import BadConfiguration, ProvError

_SCHEMA_VERSION = 1
# How many refused checkpoints are kept per origin; the oldest go first. The log's origins
# are the operator's list, so this bounds the table.
KEEP_REFUSED_PER_ORIGIN = 100
# A writer waits this long for another writer's transaction (they are milliseconds long).
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cosigned (
    origin TEXT PRIMARY KEY,
    origin_sha256 TEXT NOT NULL UNIQUE,
    size TEXT NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    old_size TEXT NOT NULL,
    size TEXT NOT NULL,
    root BLOB NOT NULL,
    proof TEXT NOT NULL,
    note TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    times INTEGER NOT NULL,
    UNIQUE (origin, old_size, size, root, proof)
);
"""


def origin_sha256(origin: str) -> str:
    """The origin's name in the monitoring path: lowercase hex SHA-256 of the origin line."""
    return hashlib.sha256(origin.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Latest:
    """The latest checkpoint the witness cosigned for one log.

    `note` is the checkpoint body with the log's signatures the witness verified and the
    witness's own cosignature, as the monitoring path serves it; `cosigned_at` is the
    cosignature's timestamp (POSIX seconds).
    """

    origin: str
    size: int
    root_hash: bytes
    note: str
    cosigned_at: int


@dataclass(frozen=True, slots=True)
class Refused:
    """A checkpoint the log validly signed and the witness refused: evidence of a fork or a
    rollback. Repeats of the same request are counted, not stored again."""

    origin: str
    old_size: int
    size: int
    root_hash: bytes
    proof: tuple[bytes, ...]
    note: str
    status: int
    reason: str
    first_seen: int = 0
    last_seen: int = 0
    times: int = 1


@dataclass(frozen=True, slots=True)
class Accept:
    """Store `latest` as the log's latest cosigned checkpoint."""

    latest: Latest


@dataclass(frozen=True, slots=True)
class Refuse:
    """Change nothing but keep `evidence`, if any; the caller raises `error`."""

    error: ProvError
    evidence: Refused | None = None


Decision = Accept | Refuse


class WitnessState:
    """The state file. Each call opens its own connection, so threads need no lock of ours
    and several processes may share one file: SQLite's locks order them."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only and not path.is_file():
            raise BadConfiguration(f"no witness state at {path}")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connection() as connection:
                if read_only:
                    self._check_version(connection)
                else:
                    self._create(connection)
        except sqlite3.DatabaseError as error:
            raise BadConfiguration(f"the witness state {path} cannot be used: {error}") from None

    def _create(self, connection: sqlite3.Connection) -> None:
        # WAL is kept in the file: set once here, it holds for every later connection.
        connection.execute("PRAGMA journal_mode=WAL")
        # Under the writer lock, so two witnesses starting on one new file create it once.
        connection.execute("BEGIN IMMEDIATE")
        try:
            if self._check_version(connection) == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            if self.read_only:
                uri = f"file:{self.path.resolve().as_posix()}?mode=ro"
                connection = sqlite3.connect(
                    uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None
                )
            else:
                # isolation_level=None: no implicit transactions; ours are explicit.
                connection = sqlite3.connect(
                    self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None
                )
        except sqlite3.Error as error:
            raise BadConfiguration(f"cannot open the witness state {self.path}: {error}") from None
        with closing(connection):
            # FULL: in WAL mode NORMAL may lose the last commits on power loss, and the
            # witness must not forget a size it has answered for.
            connection.execute("PRAGMA synchronous=FULL")
            yield connection

    def _check_version(self, connection: sqlite3.Connection) -> int:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if version == 0 and tables:
            raise BadConfiguration(f"{self.path} is a SQLite file but not a witness state")
        if version not in (0, _SCHEMA_VERSION):
            raise BadConfiguration(
                f"{self.path} is a witness state of version {version}; this witness reads "
                f"version {_SCHEMA_VERSION}"
            )
        return int(version)

    # --- the one writing step -------------------------------------------------------------

    def advance(self, origin: str, decide: Callable[[Latest | None], Decision]) -> Decision:
        """Read the log's latest cosigned checkpoint, let `decide` judge the request against
        it, and write what it decided, all under SQLite's writer lock; committed (and
        fsynced) before returning. An exception from `decide` writes nothing."""
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                decision = decide(_latest(connection, "origin", origin))
                if isinstance(decision, Accept):
                    _store(connection, decision.latest)
                elif decision.evidence is not None:
                    _keep(connection, decision.evidence)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        return decision

    # --- reading ---------------------------------------------------------------------------

    def latest(self, origin: str) -> Latest | None:
        with self._connection() as connection:
            return _latest(connection, "origin", origin)

    def latest_by_hash(self, hex_sha256: str) -> Latest | None:
        """The latest cosigned checkpoint of the origin whose SHA-256 is `hex_sha256`."""
        with self._connection() as connection:
            return _latest(connection, "origin_sha256", hex_sha256)

    def all_latest(self) -> list[Latest]:
        with self._connection() as connection:
            rows = connection.execute(f"SELECT {_LATEST_COLUMNS} FROM cosigned ORDER BY origin")
            return [_latest_from(row) for row in rows]

    def refused(self, origin: str | None = None) -> list[Refused]:
        """The refused checkpoints kept, oldest first (of one origin, or of all)."""
        where, args = ("WHERE origin = ?", (origin,)) if origin is not None else ("", ())
        with self._connection() as connection:
            rows = connection.execute(
                f"SELECT {_REFUSED_COLUMNS} FROM refused {where} ORDER BY id", args
            )
            return [_refused_from(row) for row in rows]


_LATEST_COLUMNS = "origin, size, root, note, cosigned_at"
_REFUSED_COLUMNS = (
    "origin, old_size, size, root, proof, note, status, reason, first_seen, last_seen, times"
)


def _latest(connection: sqlite3.Connection, column: str, value: str) -> Latest | None:
    row = connection.execute(
        f"SELECT {_LATEST_COLUMNS} FROM cosigned WHERE {column} = ?", (value,)
    ).fetchone()
    return None if row is None else _latest_from(row)


def _latest_from(row: tuple[str, str, bytes, str, int]) -> Latest:
    origin, size, root, note, cosigned_at = row
    return Latest(origin, int(size), bytes(root), note, int(cosigned_at))


def _store(connection: sqlite3.Connection, latest: Latest) -> None:
    connection.execute(
        "INSERT INTO cosigned (origin, origin_sha256, size, root, note, cosigned_at)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,"
        " note = excluded.note, cosigned_at = excluded.cosigned_at",
        (
            latest.origin,
            origin_sha256(latest.origin),
            str(latest.size),
            latest.root_hash,
            latest.note,
            latest.cosigned_at,
        ),
    )


def _encode_proof(proof: tuple[bytes, ...]) -> str:
    return "\n".join(base64.b64encode(node).decode() for node in proof)


def _keep(connection: sqlite3.Connection, refused: Refused) -> None:
    connection.execute(
        f"INSERT INTO refused ({_REFUSED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
        " ON CONFLICT (origin, old_size, size, root, proof) DO UPDATE SET"
        " last_seen = excluded.last_seen, times = times + 1",
        (
            refused.origin,
            str(refused.old_size),
            str(refused.size),
            refused.root_hash,
            _encode_proof(refused.proof),
            refused.note,
            refused.status,
            refused.reason,
            refused.first_seen,
            refused.last_seen,
        ),
    )
    # Bounded: a log that keeps sending forks cannot fill the disk.
    connection.execute(
        "DELETE FROM refused WHERE origin = ? AND id NOT IN"
        " (SELECT id FROM refused WHERE origin = ? ORDER BY last_seen DESC, id DESC LIMIT ?)",
        (refused.origin, refused.origin, KEEP_REFUSED_PER_ORIGIN),
    )


def _refused_from(row: tuple[str, str, str, bytes, str, str, int, str, int, int, int]) -> Refused:
    origin, old_size, size, root, proof, note, status, reason, first, last, times = row
    return Refused(
        origin,
        int(old_size),
        int(size),
        bytes(root),
        tuple(base64.b64decode(line) for line in proof.split("\n") if line),
        note,
        int(status),
        reason,
        int(first),
        int(last),
        int(times),
    )
