"""A service's signing key: made once, kept in a file, registered with the ledger.

A service signs each of its decisions with its own Ed25519 key, which the ledger accepts
only once an admin of the tenant has registered it for the service (``POST /v1/keys``).
`load_or_create_key` keeps the key in a PKCS#8 PEM file readable by its owner only, making
it the first time; `register_key` registers its public half with an ``admin`` API key.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec

from ingest.client.errors import ConnectionFailed, UnexpectedResponse, parse_problem
from ledger.keys.signing import SigningKey, load_signing_key, save_signing_key

# How far back a key's window starts by default: a decision made right now, by a clock a
# little behind the server's, is then inside it.
VALID_FROM_SLACK = timedelta(minutes=5)


def load_or_create_key(path: Path) -> tuple[SigningKey, bool]:
    """The signing key in `path`, and whether it was made just now because the file did
    not exist (a PKCS#8 PEM file, mode 0600)."""
    created = False
    if not path.exists():
        # Another process may create it first; then theirs is the key.
        with contextlib.suppress(FileExistsError):
            save_signing_key(SigningKey.generate(), path)
            created = True
    return load_signing_key(path), created


def register_key(
    url: str,
    admin_key: str,
    service: str,
    key: SigningKey,
    *,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Register `key`'s public half for `service` with ``POST /v1/keys`` of the ledger at
    `url`, using an ``admin`` API key of the tenant; the key as the server registered it
    (``keyid``, ``tenant``, ``service``, ``public_key``, ``valid_from``, ...).

    The key is valid from `valid_from` (default: five minutes ago) until `valid_until`
    (default: until it is revoked). Registering a key again answers it only with the same
    service and times. Raises `ProblemError` when the server refuses (a wrong API key, 409
    ``key-conflict`` for a key registered already, otherwise), `ConnectionFailed` when it
    cannot be reached, `ValueError` for a time without a timezone.
    """
    for moment, what in ((valid_from, "valid_from"), (valid_until, "valid_until")):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{what} must be timezone-aware")
    body = {
        "service": service,
        "public_key": key.public_key.hex(),
        "valid_from": (valid_from or datetime.now(UTC) - VALID_FROM_SLACK).isoformat(),
        "valid_until": valid_until.isoformat() if valid_until is not None else None,
    }
    endpoint = f"{url.rstrip('/')}/v1/keys"
    try:
        response = httpx.post(
            endpoint,
            json=body,
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=timeout,
        )
    except httpx.TransportError as error:
        raise ConnectionFailed(f"POST {endpoint}: {type(error).__name__}: {error}") from error
    if response.status_code != 201:
        raise parse_problem(response.status_code, response.reason_phrase, response.content)
    try:
        registered = msgspec.json.decode(response.content)
    except msgspec.DecodeError as error:
        raise UnexpectedResponse(f"the registered key does not parse: {error}") from None
    if not isinstance(registered, dict):
        raise UnexpectedResponse("the registered key is not a JSON object")
    return registered
