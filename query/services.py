"""What the read path needs from the running service, as one typed object.

The application factory builds a `ReadServices` once per worker and keeps it in the app's
state under `READ_SERVICES`; routes, pages and guards reach it through `read_services`,
which checks its type, instead of reading loose, untyped attributes of the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.datastructures import State

from ledger.blobs.stores.s3_options import S3Options
from ledger.errors import LedgerNotInitialized
from ledger.keys.apikeys import ApiKey
from ledger.ledger import Ledger
from query.subjects.explain import DEFAULT_CONTEST_CONTACT

READ_SERVICES = "read_services"


class KeyLookup(Protocol):
    """Resolves a bearer token to its API key (the service's per-worker cache)."""

    async def lookup(self, token: str) -> ApiKey | None: ...


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How the auditor pages' sessions behave, from settings."""

    ttl_s: float = 8 * 3600
    idle_s: float = 3600
    # Whether `X-Forwarded-Proto` is believed: only behind a proxy that always sets it.
    trust_proxy_headers: bool = False

    @property
    def ttl_us(self) -> int:
        return int(self.ttl_s * 1_000_000)

    @property
    def idle_us(self) -> int:
        return int(self.idle_s * 1_000_000)

    def secure(self, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        """Whether the browser reached us over HTTPS, so the cookie must be Secure. Over
        plain HTTP (a loopback port) a Secure cookie would never come back."""
        if connection.url.scheme == "https":
            return True
        if not self.trust_proxy_headers:
            return False
        # The first value is what the proxy nearest the client saw.
        forwarded = connection.headers.get("x-forwarded-proto", "").split(",")[0]
        return forwarded.strip().lower() == "https"


@dataclass(frozen=True, slots=True)
class ReadServices:
    ledger: Ledger
    api_keys: KeyLookup
    # Whether the log's hashes, entries and proofs may be read without a key.
    public_reads: bool = False
    # Where `GET /v1/reports` finds the Parquet export; None answers 404. How to reach
    # it when it is `s3://…` (PROV_S3_*).
    export_dir: str | None = None
    export_s3: S3Options | None = None
    ui_sessions: SessionPolicy = SessionPolicy()
    # How a person contests a decision: the end of every explanation (PROV_CONTEST_CONTACT).
    contest_contact: str = DEFAULT_CONTEST_CONTACT
    # Witnesses (docs/witness.md): their names, and how many must cosign a checkpoint before
    # `/checkpoint` serves it (0: no witnesses, the latest checkpoint is served).
    witnesses: tuple[str, ...] = ()
    witness_quorum: int = 0


def read_services(state: State) -> ReadServices:
    """The worker's read services; refused until the application has started."""
    services = state.get(READ_SERVICES)
    if not isinstance(services, ReadServices):
        raise LedgerNotInitialized("the service has not started: no read services yet")
    return services
