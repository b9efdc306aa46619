"""The ledger's record key: it signs every replay, policy-check, monitor, breach, erasure,
retention and legal-hold record, and only it may (its service name, `prov-replay`, is
older than the other kinds).

The key is an Ed25519 key in its own PEM file (`prov-replay.key` next to the ledger key by
default), created by `prov init` like the ledger key and never stored in the database. Its
public key is registered in the key registry under the service `REPLAY_SERVICE` for each
tenant, the first time a replay of that tenant is appended, so that admission (steps 5 to
7), `prov verify --signatures` and why-reports check a replay's signature like any other.
The registry refuses every other key for that service (`ledger.keys.keyring.register_key`).

Its keyid names the tenant as well as the key, because a keyid is registered for one
tenant only and the same key signs for every tenant.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path

import msgspec
from sqlalchemy import Connection, Engine

from ledger.errors import KeyConflict
from ledger.keys.keyring import ServiceKey, get_key
from ledger.keys.signing import SigningKey
from ledger.log.sequencer import now_micros
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, encode_decision
from ledger.records.monitor import (
    BREACH_PAYLOAD_TYPE,
    MONITOR_PAYLOAD_TYPE,
    BreachRecord,
    MonitorRecord,
    encode_record,
)
from ledger.records.policy import POLICY_CHECK_PAYLOAD_TYPE, PolicyCheckRecord, encode_policy_check
from ledger.records.replay import (
    RECORD_KEYID_PREFIX,
    REPLAY_PAYLOAD_TYPE,
    REPLAY_SERVICE,
    ReplayRecord,
)
from ledger.storage.db import conflict_insert, write_transaction
from ledger.storage.schema import service_keys

REPLAY_KEY_NAME = "prov-replay.key"

_encoder = msgspec.json.Encoder()


def default_replay_key_path(ledger_key_path: Path) -> Path:
    """Where the replay key lives unless configured: next to the ledger key."""
    return ledger_key_path.with_name(REPLAY_KEY_NAME)


def replay_keyid(tenant: str, public_key: bytes) -> str:
    """`prov-replay:<tenant>:` and the first 128 bits of the key's SHA-256, in hex."""
    return f"{RECORD_KEYID_PREFIX}{tenant}:{hashlib.sha256(public_key).hexdigest()[:32]}"


def sign_replay(record: ReplayRecord, key: SigningKey) -> bytes:
    """The replay as a DSSE envelope signed by `key` under the keyid of its tenant."""
    envelope = dsse.sign_envelope(
        REPLAY_PAYLOAD_TYPE,
        _encoder.encode(record),
        key,
        replay_keyid(record.tenant, key.public_key),
    )
    return dsse.encode_envelope(envelope)


def sign_policy_check(record: PolicyCheckRecord, key: SigningKey) -> bytes:
    """A policy check (`ledger.records.policy`), signed as a replay is: a re-run of a
    decision's recorded inputs that the ledger produced."""
    envelope = dsse.sign_envelope(
        POLICY_CHECK_PAYLOAD_TYPE,
        encode_policy_check(record),
        key,
        replay_keyid(record.tenant, key.public_key),
    )
    return dsse.encode_envelope(envelope)


def sign_ledger_record(payload_type: str, payload: bytes, tenant: str, key: SigningKey) -> bytes:
    """Any record the ledger makes, as a DSSE envelope under the tenant's record keyid."""
    envelope = dsse.sign_envelope(payload_type, payload, key, replay_keyid(tenant, key.public_key))
    return dsse.encode_envelope(envelope)


def register_replay_key(connection: Connection, tenant: str, public_key: bytes) -> ServiceKey:
    """Register `public_key` as `tenant`'s replay key, unless it is already; safe when
    several processes do it at once (the second insert does nothing)."""
    keyid = replay_keyid(tenant, public_key)
    # The replay key signs replays whenever they ran: it is held by the ledger alone, so
    # its window is open, and revoking it is how it is retired.
    row = {
        "keyid": keyid,
        "tenant": tenant,
        "service": REPLAY_SERVICE,
        "public_key": public_key,
        "valid_from_us": 0,
        "valid_until_us": None,
        "created_us": now_micros(),
    }
    statement = conflict_insert(connection, service_keys).values(row).on_conflict_do_nothing()
    connection.execute(statement)
    key = get_key(connection, keyid)
    if key is None or (key.tenant, key.service, key.public_key) != (
        tenant,
        REPLAY_SERVICE,
        public_key,
    ):
        raise KeyConflict(f"keyid {keyid} is registered to another key or service")
    return key


class ReplaySigner:
    """The replay key, and the tenants this process has already registered it for."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self._registered: set[str] = set()
        self._lock = threading.Lock()

    def register(self, engine: Engine, tenants: Iterable[str]) -> None:
        """Make sure the key is registered for each of `tenants`, in one transaction."""
        with self._lock:
            missing = sorted(set(tenants) - self._registered)
        if not missing:
            return
        with write_transaction(engine) as connection:
            for tenant in missing:
                register_replay_key(connection, tenant, self.key.public_key)
        with self._lock:
            self._registered.update(missing)

    def sign(self, record: ReplayRecord) -> bytes:
        return sign_replay(record, self.key)

    def sign_policy_check(self, record: PolicyCheckRecord) -> bytes:
        return sign_policy_check(record, self.key)

    def sign_decision(self, decision: Decision) -> bytes:
        """A decision the ledger built from unsigned input (OTLP spans): ledger-attested."""
        return sign_ledger_record(
            DECISION_PAYLOAD_TYPE, encode_decision(decision), decision.tenant, self.key
        )

    def sign_monitor(self, record: MonitorRecord) -> bytes:
        return sign_ledger_record(
            MONITOR_PAYLOAD_TYPE, encode_record(record), record.tenant, self.key
        )

    def sign_breach(self, record: BreachRecord, connection: Connection) -> tuple[bytes, str]:
        """A breach record, signed inside the sequencing transaction on `connection`."""
        return self.sign_in(BREACH_PAYLOAD_TYPE, encode_record(record), record.tenant, connection)

    def sign_in(
        self, payload_type: str, payload: bytes, tenant: str, connection: Connection
    ) -> tuple[bytes, str]:
        """A record the ledger makes inside a transaction that holds the log's lock (a
        breach, an erasure), signed there; the key is registered for the tenant on
        `connection` first if this process has not yet. Returns the envelope and keyid."""
        keyid = replay_keyid(tenant, self.key.public_key)
        with self._lock:
            known = tenant in self._registered
        if not known:
            register_replay_key(connection, tenant, self.key.public_key)
        return sign_ledger_record(payload_type, payload, tenant, self.key), keyid
