"""What `prov collector` is told: the ledger, the service it signs for, where it listens and
keeps spans, and how it paces assembly; each value checked before anything starts."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from ingest.otlp.assembler import AssemblyPolicy
from ledger.errors import ProvError

DEFAULT_PORT = 4318  # OTLP/HTTP's registered port: exporters send here unless told otherwise
MAX_BODY_BYTES = 16 << 20  # as `prov serve` takes by default (PROV_OTLP_MAX_BYTES)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # the record schema's tenant and service


class CollectorConfigError(ProvError, ValueError):
    """A collector option that cannot work, named with the reason."""

    kind = "bad-collector-config"
    title = "Collector option cannot work"


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    ledger_url: str
    api_key: str
    tenant: str
    service: str
    key_file: Path
    data: Path
    keyid: str | None = None
    verifier_key: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    listen_token: str | None = None
    settle_s: float = 1.0
    grace_s: float = 300.0
    # One collector owns its data directory and assembles one batch at a time, so a claim
    # only lapses when an assembly failed outright (say, the API key was refused): this is
    # how soon such traces are tried again.
    claim_s: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.ledger_url):
            raise CollectorConfigError(
                f"--ledger-url {self.ledger_url!r} is not an http:// or https:// URL"
            )
        if not self.api_key:
            raise CollectorConfigError("no API key: give --api-key or --api-key-file")
        for name, value in (("--tenant", self.tenant), ("--service", self.service)):
            if not _SLUG.match(value):
                raise CollectorConfigError(
                    f"{name} {value!r} is not a slug (lower-case letters, digits, '.', '_', "
                    "'-'; at most 63 characters, starting with a letter or digit)"
                )
        if self.settle_s < 0 or self.grace_s <= 0 or self.claim_s <= 0:
            raise CollectorConfigError(
                "--settle-seconds must be >= 0, --grace-seconds and --claim-seconds > 0"
            )
        if self.grace_s < self.settle_s:
            raise CollectorConfigError("--grace-seconds must be at least --settle-seconds")
        if self.listen_token == "":
            raise CollectorConfigError("--listen-token is empty")
        if self.listen_token is None and not is_loopback(self.host):
            # Whoever reaches the port gets records signed with the service's key.
            raise CollectorConfigError(
                f"--host {self.host} is reachable from other hosts: give --listen-token so "
                "that only your service's exporter can have spans signed with its key"
            )

    @property
    def policy(self) -> AssemblyPolicy:
        return AssemblyPolicy(settle_s=self.settle_s, grace_s=self.grace_s, claim_s=self.claim_s)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this host only (``localhost`` or a loopback IP)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything
