"""A service key as registered: which tenant and service it signs for, and when.

Pure data, no database: the registry (`ledger.keys.keyring`) stores it, and offline checks
(a why-report's signing key, a stored record re-checked) build it from JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.log.entry import rfc3339


@dataclass(frozen=True, slots=True)
class ServiceKey:
    keyid: str
    tenant: str
    service: str
    public_key: bytes
    valid_from_us: int
    valid_until_us: int | None
    revoked_us: int | None

    def valid_at(self, moment_us: int) -> bool:
        if moment_us < self.valid_from_us:
            return False
        return self.valid_until_us is None or moment_us < self.valid_until_us

    def to_json(self) -> dict[str, object]:
        return {
            "keyid": self.keyid,
            "tenant": self.tenant,
            "service": self.service,
            "public_key": self.public_key.hex(),
            "valid_from": rfc3339(self.valid_from_us),
            "valid_until": None if self.valid_until_us is None else rfc3339(self.valid_until_us),
            "revoked_at": None if self.revoked_us is None else rfc3339(self.revoked_us),
        }
