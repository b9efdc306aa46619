"""Table definitions, shared by the application (SQLAlchemy Core) and Alembic autogenerate.

The log tables (`log_entries`, `tree_nodes`, `checkpoints`) are append-only. Nothing stored
in them is trusted by verification: `prov verify` recomputes every hash from the envelope
bytes, so these columns are caches of what the bytes already determine.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# One naming convention, so that SQLite batch migrations and PostgreSQL agree on names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
LOG_TABLES = ("log_entries", "tree_nodes", "checkpoints")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ledger_info = Table(
    "ledger_info",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("payload_type", String(128), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("integrated_us", BigInteger, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    UniqueConstraint("tenant", "record_id", name="uq_log_entries_tenant_record_id"),
)

# Perfect subtree hashes at level >= 1 (level 0 is log_entries.leaf_hash): node (level, idx)
# covers leaves [idx * 2**level, (idx + 1) * 2**level). They make a proof O(log n) reads.
tree_nodes = Table(
    "tree_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

# Witnesses' cosignatures of stored checkpoints (docs/witness.md): one signature line per
# witness per checkpoint, verified against the witness's configured key before it is kept.
# `cosigned_s` is the witness's own timestamp; served notes append these lines, ordered by
# witness, after the log's signature.
checkpoint_cosignatures = Table(
    "checkpoint_cosignatures",
    metadata,
    Column("tree_size", BigInteger, nullable=False),
    Column("witness", String(256), nullable=False),
    Column("line", Text, nullable=False),
    Column("cosigned_s", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("tree_size", "witness"),
    Index("ix_checkpoint_cosignatures_witness", "witness", "tree_size"),
)

service_keys = Table(
    "service_keys",
    metadata,
    Column("keyid", String(128), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("service", String(64), nullable=False),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("valid_from_us", BigInteger, nullable=False),
    Column("valid_until_us", BigInteger, nullable=True),
    Column("revoked_us", BigInteger, nullable=True),
    Column("created_us", BigInteger, nullable=False),
)

# API keys are stored only as SHA-256 of the secret token; `id` is the token's public part.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", LargeBinary(32), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger, nullable=True),
)

# The index of content-addressed blobs that records reference by digest (`ledger.blobs`).
# The bytes are sealed under the data key `key_id` of `subject` and live in the object
# store as `<tenant>/<digest hex>.<key_id>`; `content` holds only blobs stored before
# sealing (plaintext, migration 0011). Erasure stamps `erased_us` (and `erasure_idx`, the
# log index of its erasure record) and drops the bytes; the digest stays, so the log still
# verifies.
blobs = Table(
    "blobs",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("digest", String(71), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("erased_us", BigInteger, nullable=True),
    Column("subject", String(256), nullable=True),
    Column("key_id", String(32), nullable=True),
    Column("erasure_idx", BigInteger, nullable=True),
    Index("ix_blobs_tenant_subject", "tenant", "subject"),
)

# The database object store's objects (`ledger.blobs.stores.database`): sealed bytes.
blob_objects = Table(
    "blob_objects",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("content", LargeBinary, nullable=False),
)

# The blobs each decision references (`ledger.indexes.blob_refs`), written with the decision's
# entry: how erasure finds a subject's content, and expiry a blob's latest use.
blob_refs = Table(
    "blob_refs",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("digest", String(71), nullable=False),
    Column("idx", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "digest", "idx"),
    Index("ix_blob_refs_idx", "idx"),
)

# Erasure requests (`ledger.erasure`, docs/erasure.md): one row per request. `queued` waits
# for the retention floor's end (`not_before_us`) or a hold's release and has no record yet;
# `recorded` has its erasure records in the log (from `first_idx`, `parts` of them) and its
# blobs marked erased, its objects and key not yet destroyed; `done` is complete.
erasures = Table(
    "erasures",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("subject", String(256), nullable=True),
    Column("state", String(8), nullable=False),
    Column("requested_by", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_us", BigInteger, nullable=False),
    Column("not_before_us", BigInteger, nullable=True),
    Column("waiting_for", Text, nullable=True),
    Column("first_idx", BigInteger, nullable=True),
    Column("parts", Integer, nullable=True),
    Column("digests", Integer, nullable=True),
    Column("erased_us", BigInteger, nullable=True),
    Column("done_us", BigInteger, nullable=True),
    Index("ix_erasures_state", "state"),
)

# Retention rules and legal holds, derived from their records and written with their entries.
retention_rules = Table(
    "retention_rules",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("floor_days", Integer, nullable=False),
    Column("expire_after_days", Integer, nullable=True),
    Column("set_us", BigInteger, nullable=False),
    UniqueConstraint("tenant", "version", name="uq_retention_rules_tenant_version"),
)

legal_holds = Table(
    "legal_holds",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("hold_id", String(128), primary_key=True),
    Column("idx", BigInteger, nullable=False),
    Column("subject", String(256), nullable=True),
    Column("service", String(128), nullable=True),
    Column("decision_type", String(128), nullable=True),
    Column("reason", Text, nullable=False),
    Column("placed_by", String(256), nullable=False),
    Column("placed_us", BigInteger, nullable=False),
    Column("released_idx", BigInteger, nullable=True),
    Column("released_us", BigInteger, nullable=True),
    Column("released_by", String(256), nullable=True),
)

# One row per decision record, written in the same transaction as its log entry: the search
# index. It is derived from the signed payload and trusted by nothing; `output` is the JSON
# of `output.decision`, matched by path. Search lists the newest decisions first, by
# `(occurred_us, idx)`: every index leads with the tenant (each search is within one), then
# the equality filters, and ends with `occurred_us, idx`, so that a filtered page, with or
# without a time window, is one backward range scan and never a sort.
decisions = Table(
    "decisions",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("service", String(64), nullable=False),
    Column("decision_type", String(128), nullable=False),
    Column("occurred_us", BigInteger, nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("model_version", String(256), nullable=False),
    Column("subject", String(256), nullable=True),
    # The issuer of the root delegation: the principal who first granted the authority.
    Column("delegator", String(256), nullable=True),
    Column("output", Text, nullable=False),
    # Who signed: `producer-signed` (the service's own key) or `ledger-attested` (the
    # ledger's record key, for a decision it built from unsigned input such as OTLP spans).
    Column("attestation", String(16), nullable=False, server_default="producer-signed"),
    Index("ix_decisions_tenant_occurred", "tenant", "occurred_us", "idx"),
    Index(
        "ix_decisions_tenant_service",
        "tenant",
        "service",
        "decision_type",
        "occurred_us",
        "idx",
    ),
    Index("ix_decisions_tenant_type", "tenant", "decision_type", "occurred_us", "idx"),
    Index(
        "ix_decisions_tenant_model", "tenant", "model_name", "model_version", "occurred_us", "idx"
    ),
    Index("ix_decisions_tenant_subject", "tenant", "subject", "occurred_us", "idx"),
    Index("ix_decisions_tenant_delegator", "tenant", "delegator", "occurred_us", "idx"),
)

# Derived from principal records (docs/delegation.md), written with their log entries: who is
# enrolled in a tenant, by DID and by name. A DID may be enrolled again; the latest record
# before a decision is the one that counts for it.
principals = Table(
    "principals",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("did", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("display_name", String(256), nullable=True),
    Column("kind", String(16), nullable=False),
    Index("ix_principals_tenant_did", "tenant", "did", "idx"),
    Index("ix_principals_tenant_name", "tenant", "name", "idx"),
)

# Derived from revocation records: which delegations (by binary CID) a tenant's log revokes.
revocations = Table(
    "revocations",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("cid", LargeBinary(36), nullable=False),
    Column("revoker", String(128), nullable=False),
    Index("ix_revocations_tenant_cid", "tenant", "cid", "idx"),
)

# One row per decision whose chain verified at ingest. The unique constraints are what makes
# a replayed invocation impossible to store twice, whatever the sequencer's own check says;
# `root` is the principal's DID, for searching decisions by who authorized them.
invocations = Table(
    "invocations",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("cid", LargeBinary(36), nullable=False),
    Column("issuer", String(128), nullable=False),
    Column("nonce", LargeBinary(64), nullable=False),
    Column("root", String(128), nullable=False),
    UniqueConstraint("cid", name="uq_invocations_cid"),
    UniqueConstraint("issuer", "nonce", name="uq_invocations_issuer_nonce"),
    Index("ix_invocations_tenant_root", "tenant", "root", "idx"),
)

# Configuration, not evidence: how strictly each tenant's ingest checks delegation chains.
delegation_modes = Table(
    "delegation_modes",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

# One row per replay record (ledger/records/replay.py), written with its log entry: which
# replays a decision has, and which belong to a batch. Derived from the signed payload;
# why-reports list replays from here but verify each from its envelope.
replays = Table(
    "replays",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("replay_of", String(256), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("batch", String(256), nullable=True),
    Column("model_provider", String(256), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("model_version", String(256), nullable=True),
    Column("occurred_us", BigInteger, nullable=False),
    Index("ix_replays_tenant_replay_of", "tenant", "replay_of", "idx"),
    Index("ix_replays_tenant_batch", "tenant", "batch", "idx"),
)

# Replay jobs (one decision, or a batch over a search) and their progress: operational
# state, not evidence. `request`, `counts` (verdict -> n) and `report` are JSON text.
replay_jobs = Table(
    "replay_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # single | batch
    Column("state", String(16), nullable=False),  # queued | running | done | failed
    Column("request", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("counts", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("report", Text, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Index("ix_replay_jobs_tenant_created", "tenant", "created_us"),
)

# Signed-in browsers of the auditor pages (ledger/keys/ui_sessions.py): operational state, not
# evidence. Only the SHA-256 of a session's random id is kept, so a copy of the database
# signs no one in; a session is good only while its API key is live.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id_hash", LargeBinary(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("api_key_id", String(32), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Index("ix_ui_sessions_api_key_id", "api_key_id", "created_us"),
    Index("ix_ui_sessions_expires_us", "expires_us"),
)

# Freshness (ledger/indexes/freshness.py, docs/freshness.md): derived from decision and
# context-change records and written with their log entries. `context_dependencies` is the
# dependency index: (tenant, key, version) -> decisions, so that invalidating a key is one
# indexed range, never a scan of the log.
# No primary key: admission lists each (key, version) of a decision once, and a narrow index
# on `idx` is cheaper to fill at ingest than a unique one on three columns.
context_dependencies = Table(
    "context_dependencies",
    metadata,
    Column("idx", BigInteger, nullable=False),
    Column("key", String(256), nullable=False),
    Column("version", String(256), nullable=False),
    Column("tenant", String(64), nullable=False),
    Index("ix_context_dependencies_idx", "idx"),
    Index("ix_context_dependencies_tenant_key", "tenant", "key", "version", "idx"),
)

# A decision that declares freshness, with the earliest `valid_until` it or its snapshots
# name (NULL: no expiry). A decision without a row declares nothing: `unknown`.
decision_freshness = Table(
    "decision_freshness",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("valid_until_us", BigInteger, nullable=True),
    Index("ix_decision_freshness_tenant_valid_until", "tenant", "valid_until_us"),
)

# The trace (`trace:<id>`) and conversation (`conversation:<id>`) of each decision that has
# dependencies: two decisions of one thread relying on different versions of a key saw
# inconsistent context.
decision_threads = Table(
    "decision_threads",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("thread", String(256), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Index("ix_decision_threads_tenant_thread", "tenant", "thread", "idx"),
)

context_changes = Table(
    "context_changes",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("key", String(256), nullable=False),
    Column("version", String(256), nullable=False),
    Column("changed_us", BigInteger, nullable=False),
    Index("ix_context_changes_tenant_key", "tenant", "key", "idx"),
    Index("ix_context_changes_tenant_key_version", "tenant", "key", "version", "idx"),
)

# One row per dependency a change superseded: decision `idx` relied on `key` at `version`,
# and change `change_idx` replaced it; `stale_us` is when the ledger marked it.
stale_marks = Table(
    "stale_marks",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("key", String(256), primary_key=True),
    Column("version", String(256), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("change_idx", BigInteger, nullable=False),
    Column("stale_us", BigInteger, nullable=False),
    Index("ix_stale_marks_tenant_stale", "tenant", "stale_us", "idx"),
    Index("ix_stale_marks_change", "change_idx", "idx"),
)

# Webhook subscriptions (operational state, not evidence): where a tenant's events go.
# `events` is a space-separated list of event types.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", String(256), nullable=False),
    Column("description", String(256), nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("deleted_us", BigInteger, nullable=True),
    Index("ix_subscriptions_tenant", "tenant", "created_us"),
)

# The transactional outbox (ledger/notify/outbox.py): one row per event and subscription,
# written in the transaction of the record that caused it, delivered at least once after.
# A `decision.stale` row covers the decisions change `subject_idx` marked among log indexes
# `first_idx` to `last_idx`; delivery sends them in chunks and moves `cursor_idx` on.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("subscription_id", String(32), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("subject_idx", BigInteger, nullable=False),
    Column("first_idx", BigInteger, nullable=False),
    Column("last_idx", BigInteger, nullable=False),
    Column("cursor_idx", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("lease_until_us", BigInteger, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("delivered_us", BigInteger, nullable=True),
    Index("ix_outbox_state_next", "state", "next_attempt_us"),
    Index("ix_outbox_subscription", "subscription_id", "id"),
)

# Policies (ledger/indexes/policies.py, docs/policy.md): derived from policy and policy-check
# records and written with their log entries. A decision's `policy.digest` resolves to its
# document through `policies`; (tenant, policy_id, version) is registered once.
policies = Table(
    "policies",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("policy_id", String(256), nullable=False),
    Column("version", String(256), nullable=False),
    Column("digest", String(71), nullable=False),
    Column("engine", String(32), nullable=False),
    Column("registered_us", BigInteger, nullable=False),
    UniqueConstraint("tenant", "policy_id", "version", name="uq_policies_tenant_policy_version"),
    Index("ix_policies_tenant_digest", "tenant", "digest"),
)

# One row per policy check: which decision, which policy version, in which mode and batch,
# and the verdict.
policy_checks = Table(
    "policy_checks",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("decision_id", String(256), nullable=False),
    Column("policy_id", String(256), nullable=False),
    Column("version", String(256), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("batch", String(256), nullable=True),
    Column("occurred_us", BigInteger, nullable=False),
    Index("ix_policy_checks_tenant_decision", "tenant", "decision_id", "idx"),
    Index("ix_policy_checks_tenant_batch", "tenant", "batch", "idx"),
)

# Monitors (ledger/indexes/monitors.py, docs/monitors.md): derived from monitor and breach
# records and written with their log entries. The live windows are not stored: they are
# rebuilt from the log (`ledger.monitors.live`).
monitors = Table(
    "monitors",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("monitor_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(71), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("action", String(8), nullable=False),
    Column("applied_us", BigInteger, nullable=False),
    UniqueConstraint("tenant", "monitor_id", "version", name="uq_monitors_tenant_monitor_version"),
)

# One row per breach record: a monitor's group crossing its limit or returning within it.
monitor_breaches = Table(
    "monitor_breaches",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(64), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("monitor_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("group_key", String(512), nullable=False),
    Column("state", String(16), nullable=False),
    Column("action", String(8), nullable=False),
    Column("value", String(64), nullable=False),
    Column("limit_value", String(64), nullable=False),
    Column("first_idx", BigInteger, nullable=False),
    Column("last_idx", BigInteger, nullable=False),
    Column("decision_idx", BigInteger, nullable=True),
    Column("occurred_us", BigInteger, nullable=False),
    Index("ix_monitor_breaches_tenant_monitor", "tenant", "monitor_id", "idx"),
    Index("ix_monitor_breaches_decision", "decision_idx"),
)

# A monitor's value per group, as each batch that moved it left it: the history the page
# draws and what `prov monitor status` reads. One row per (batch, monitor, group touched).
monitor_samples = Table(
    "monitor_samples",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("monitor_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("group_key", String(512), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("integrated_us", BigInteger, nullable=False),
    Column("value", String(64), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("breached", Boolean, nullable=False),
    PrimaryKeyConstraint("tenant", "monitor_id", "group_key", "idx"),
    Index("ix_monitor_samples_monitor_idx", "tenant", "monitor_id", "idx"),
)

# Decisions sequenced while a `flag` monitor they counted stood over its limit.
monitor_flags = Table(
    "monitor_flags",
    metadata,
    Column("decision_idx", BigInteger, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("monitor_id", String(64), nullable=False),
    Column("group_key", String(512), nullable=False),
    PrimaryKeyConstraint("decision_idx", "monitor_id", "group_key"),
)

# OTLP spans and span events waiting for their trace to be assembled into decisions
# (`ingest.otlp.store`): what an export carried is stored here before the receiver answers,
# so nothing acknowledged is lost; a trace's items are deleted once its decisions are in
# the log. `item` is ``span``, or ``event:`` and a digest of a logged event.
otlp_items = Table(
    "otlp_items",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("item", String(40), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "trace_id", "span_id", "item"),
)

# One row per trace the receiver has seen: when its first and latest items arrived, when a
# span that heads a decision arrived (`ready_us`), and its state: ``open``, ``busy`` (an
# assembler claimed it at `claimed_us`) or ``done`` (its decisions are in the log; kept a
# while so that a late or repeated export is told so rather than starting a new trace).
otlp_traces = Table(
    "otlp_traces",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("state", String(8), nullable=False),
    Column("first_us", BigInteger, nullable=False),
    Column("last_us", BigInteger, nullable=False),
    Column("ready_us", BigInteger, nullable=True),
    Column("claimed_us", BigInteger, nullable=True),
    Column("decisions", Integer, nullable=True),
    Column("note", Text, nullable=True),
    PrimaryKeyConstraint("tenant", "trace_id"),
    Index("ix_otlp_traces_state_last", "state", "last_us"),
)
