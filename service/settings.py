"""Settings, read from `PROV_*` environment variables (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec
from sqlalchemy.engine import make_url

from ledger.admission import DEFAULT_MAX_RECORD_BYTES
from ledger.blobs.stores.open import check_store_url
from ledger.blobs.stores.s3_options import S3Options
from ledger.ledger import DEFAULT_ORIGIN
from ledger.publication import open_target
from ledger.storage.db import normalize_url
from query.subjects.explain import DEFAULT_CONTEST_CONTACT
from service.witnessing import config as witness_config

_PREFIX = "PROV_"

Positive = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Where the ledger lives: a SQLAlchemy URL, `postgresql://…`, or a SQLite file path.
    database_url: str = "prov.db"
    # The ledger's Ed25519 signing key (PKCS#8 PEM); created by `prov init`, never in the DB.
    ledger_key_file: Path = Path("prov-ledger.key")
    # The key that signs replay records (PKCS#8 PEM); created by `prov init`, never in the
    # DB. Unset: `prov-replay.key` in the ledger key's directory.
    replay_key_file: Path | None = None
    # The key-encryption key that wraps every subject's blob data key (docs/erasure.md);
    # created by `prov init`, never in the DB. Unset: `prov-blobs.kek` beside the ledger key.
    kek_file: Path | None = None
    # The subjects' data keys (wrapped by the KEK), outside the database so that destroying
    # one erases every copy of the subject's blobs. Unset: `prov-subject-keys.db` beside the
    # ledger key.
    subject_keys_file: Path | None = None
    # Servers on several hosts share one key store: a PostgreSQL database of its own (never
    # the ledger's, whose backups must not hold the keys). Set, it replaces the file.
    subject_keys_url: str | None = None
    # Where blob bytes live, sealed: `database`, a directory (`file:///abs/path` or
    # `/abs/path`) or `s3://bucket/prefix` (docs/configuration.md).
    blob_store: str = "database"
    # S3-compatible object storage, for an `s3://` blob store and Parquet export. Unset
    # endpoint: AWS. Unset keys: the client reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Plain http:// to the endpoint (a server on loopback or in the same pod).
    s3_allow_http: bool = False
    # The log's identity in checkpoints, fixed when the ledger is first initialized.
    origin: str = DEFAULT_ORIGIN
    max_record_bytes: Positive = DEFAULT_MAX_RECORD_BYTES

    # `prov serve`
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    workers: Positive = 1
    max_body_bytes: Positive = 16 << 20
    batch_max_records: Positive = 1000
    max_blob_bytes: Positive = 32 << 20
    # Group commit: a batch closes after this wait or at this many records.
    commit_max_wait_ms: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    commit_max_records: Positive = 2000
    # Records waiting for a commit, per worker, before appends answer 429.
    queue_max_records: Positive = 20_000
    # Request bodies (records, batches, blobs) one worker holds in memory at once, from the
    # first byte read until the answer is sent; a request that cannot get its share within
    # the wait is answered 503 with Retry-After, unread.
    body_memory_bytes: Positive = 48 << 20
    body_memory_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    # Temporary-file space for blob uploads in flight, per worker (same wait and refusal).
    blob_spool_bytes: Positive = 256 << 20
    # Connection limits, per worker: the time a client has to send a request's headers
    # (from connecting, or from the first byte of its next request) and its body, the idle
    # time of a kept-alive connection, the size of the headers, and the open connections.
    header_timeout_seconds: PositiveFloat = 10.0
    body_timeout_seconds: PositiveFloat = 60.0
    keep_alive_seconds: Positive = 5
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 << 10
    max_connections: Positive = 2048
    # The log's own reads (checkpoints, /v1/log, entries, proofs, tiles) without an API
    # key; decisions, blobs, reports and the auditor pages still need one.
    public_reads: bool = False
    # How long a worker trusts an API key lookup; a revocation takes effect within this.
    auth_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # Auditor page sessions: ended this long after sign-in, or after this long unused.
    ui_session_ttl_seconds: Positive = 8 * 3600
    ui_session_idle_seconds: Positive = 3600
    # Believe `X-Forwarded-Proto: https` from the proxy in front (the session cookie is then
    # marked Secure). Only when every request comes through a proxy that sets the header.
    trust_proxy_headers: bool = False
    # How a person contests a decision made about them: the last part of every explanation
    # (the explanation page, `prov subject explain`, subject bundles; docs/erasure.md).
    contest_contact: str = DEFAULT_CONTEST_CONTACT
    log_level: str = "info"
    # Where `prov export` writes (a directory or a pyarrow filesystem URI); the reports
    # endpoint reads it. Unset: `GET /v1/reports/…` answers 404.
    export_dir: str | None = None
    # The model registry (TOML) that pinned and counterfactual replays call models through;
    # `prov replay --registry` overrides it. Unset: only deterministic replays run.
    replay_registry: Path | None = None
    # Webhooks (docs/webhooks.md): each POST's timeout; attempts before a delivery is
    # dead-lettered; the backoff between attempts (full jitter, doubling from the base up to
    # the cap); how often an idle worker looks for due deliveries; how long a worker holds a
    # delivery it claimed before another may take it (longer than the timeout).
    webhook_timeout_seconds: PositiveFloat = 10.0
    webhook_max_attempts: Positive = 16
    webhook_backoff_base_seconds: PositiveFloat = 5.0
    webhook_backoff_cap_seconds: PositiveFloat = 3600.0
    webhook_poll_seconds: PositiveFloat = 1.0
    webhook_lease_seconds: PositiveFloat = 60.0

    # OTLP ingest (docs/otlp.md): the largest export body (and what a gzip body may inflate
    # to); how long a trace stays quiet after its head span arrived before it is assembled;
    # how long a trace whose head never came waits before it is closed as an incomplete
    # decision; how long an assembler's claim lasts before another may take the trace; how
    # long assembled traces are remembered (later spans for them are refused, not stored).
    otlp_max_bytes: Positive = 16 << 20
    otlp_settle_seconds: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    otlp_grace_seconds: PositiveFloat = 300.0
    otlp_claim_seconds: PositiveFloat = 60.0
    otlp_keep_seconds: PositiveFloat = 86_400.0

    # Erasure (docs/erasure.md): how often each server process runs the erasure job
    # (completes interrupted erasures, runs queued ones, expires content past its tenant's
    # expiry); it also runs once at start-up.
    expiry_interval_seconds: PositiveFloat = 3600.0

    # Witnesses (docs/witness.md): each `<witness verifier key>@<submission URL>`, separated
    # by commas or spaces. Every new checkpoint is sent to each for its cosignature; how many
    # must cosign before `/checkpoint` serves a checkpoint (unset: all of them); how often
    # each witness is asked, and how long one request may take.
    witnesses: str | None = None
    witness_quorum: Positive | None = None
    witness_interval_seconds: PositiveFloat = 1.0
    witness_timeout_seconds: PositiveFloat = 5.0
    # Where each served checkpoint is also written, append-only: a directory or
    # `s3://bucket/prefix` (PROV_S3_* reach it). Unset: not published.
    publish_checkpoints: str | None = None

    def __post_init__(self) -> None:
        if self.subject_keys_url is not None and _same_database(
            self.subject_keys_url, self.database_url
        ):
            # The ledger's backups would then hold every data key: no erasure would reach them.
            raise ValueError(
                "PROV_SUBJECT_KEYS_URL must name a database of its own, not PROV_DATABASE_URL's"
            )
        # Bad witness or publication settings stop the server at start, not at its first
        # checkpoint.
        if self.publish_checkpoints is not None:
            open_target(self.publish_checkpoints, self.s3_options())
        witness_config.witness_quorum(
            witness_config.parse_witnesses(self.witnesses), self.witness_quorum
        )
        # A blob store that cannot work stops the server at start, not at the first upload.
        check_store_url(self.blob_store)
        self.s3_options().check()
        if self.batch_max_records > self.queue_max_records:
            raise ValueError("PROV_BATCH_MAX_RECORDS must not exceed PROV_QUEUE_MAX_RECORDS")
        if self.blob_spool_bytes < self.max_blob_bytes:
            raise ValueError("PROV_BLOB_SPOOL_BYTES must be at least PROV_MAX_BLOB_BYTES")
        largest = max(self.max_body_bytes, self.max_blob_bytes, self.max_record_bytes)
        if self.body_memory_bytes < largest:
            # Otherwise the largest request allowed could never be read.
            raise ValueError(
                "PROV_BODY_MEMORY_BYTES must be at least the largest of PROV_MAX_BODY_BYTES, "
                "PROV_MAX_BLOB_BYTES and PROV_MAX_RECORD_BYTES"
            )
        if self.webhook_backoff_base_seconds > self.webhook_backoff_cap_seconds:
            raise ValueError(
                "PROV_WEBHOOK_BACKOFF_BASE_SECONDS must not exceed PROV_WEBHOOK_BACKOFF_CAP_SECONDS"
            )
        if self.otlp_grace_seconds < self.otlp_settle_seconds:
            raise ValueError(
                "PROV_OTLP_GRACE_SECONDS must not be less than PROV_OTLP_SETTLE_SECONDS"
            )
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            # Else a slow receiver's delivery could be claimed again while still under way.
            raise ValueError("PROV_WEBHOOK_LEASE_SECONDS must exceed PROV_WEBHOOK_TIMEOUT_SECONDS")

    def witness_endpoints(self) -> list[witness_config.WitnessEndpoint]:
        return witness_config.parse_witnesses(self.witnesses)

    def served_quorum(self) -> int:
        """How many cosignatures `/checkpoint` waits for (0: no witnesses)."""
        return witness_config.witness_quorum(self.witness_endpoints(), self.witness_quorum)

    def s3_options(self) -> S3Options:
        """How to reach S3, for the blob store and for an export to `s3://`."""
        return S3Options(
            endpoint=self.s3_endpoint,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            allow_http=self.s3_allow_http,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        fields = {
            name.removeprefix(_PREFIX).lower(): value
            for name, value in environ.items()
            if name.startswith(_PREFIX)
            and name.removeprefix(_PREFIX).lower() in cls.__struct_fields__
        }
        try:
            return msgspec.convert(fields, cls, strict=False, dec_hook=_decode_path)
        except (msgspec.ValidationError, ValueError) as error:
            raise ValueError(f"bad PROV_* setting: {error}") from None

    def to_env(self) -> dict[str, str]:
        """The settings as `PROV_*` variables, so that server worker processes see exactly
        what the command line resolved. An unset setting is left out, so that it stays
        unset there too."""
        return {
            f"{_PREFIX}{name.upper()}": str(value).lower()
            if isinstance(value, bool)
            else str(value)
            for name, value in msgspec.structs.asdict(self).items()
            if value is not None
        }


def _decode_path(kind: type, value: object) -> object:
    """msgspec's hook for types it does not know; `Path` is the only one settings use."""
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise TypeError(f"unsupported setting type {kind!r}")


def _same_database(one: str, other: str) -> bool:
    """Whether two database URLs name the same database (host, port and name)."""
    first, second = make_url(normalize_url(one)), make_url(normalize_url(other))
    return (first.host, first.port or 5432, first.database) == (
        second.host,
        second.port or 5432,
        second.database,
    )
