"""Server-side sessions for the auditor pages: a browser holds a random id, never a key.

Signing in with an API key creates a session: `secrets.token_urlsafe(32)`, sent to the
browser once and stored only as its SHA-256 beside the tenant and the key's id. A session
ends at the first of: its lifetime (`ttl_us` from sign-in), its idle timeout (`idle_us`
since it was last seen), sign-out, and its API key's revocation. It resolves through the
key on every request, so a revoked key ends its sessions at once, whatever cache the API
keeps; revoking a key also deletes its rows (`ledger.keys.apikeys.revoke_api_key`).

None of this takes the log's write lock: a sign-in never waits on a group commit.
"""

from __future__ import annotations

import secrets
from typing import Final

from sqlalchemy import Connection, Engine, delete, insert, or_, select, update

from ledger.keys.apikeys import KEY_COLUMNS, ApiKey, key_from_row, token_hash
from ledger.storage.db import side_write_transaction
from ledger.storage.schema import api_keys, ui_sessions

# Seeing a session again moves its idle deadline; more often than this is not worth a write.
TOUCH_EVERY_US: Final = 60_000_000
# One key may hold this many sessions (one per browser); signing in again past it ends the
# oldest, so that a script signing in in a loop cannot grow the table without bound.
MAX_SESSIONS_PER_KEY: Final = 32


# A session id is stored as an API key's token is: only its SHA-256.
session_hash = token_hash


def create(connection: Connection, key: ApiKey, *, now_us: int, ttl_us: int) -> str:
    """A new session for `key`; its id is returned once and never stored."""
    session_id = secrets.token_urlsafe(32)
    # The write comes first, so that SQLite takes its write lock (and waits for it) at once.
    connection.execute(
        insert(ui_sessions).values(
            id_hash=session_hash(session_id),
            tenant=key.tenant,
            api_key_id=key.id,
            created_us=now_us,
            expires_us=now_us + ttl_us,
            last_seen_us=now_us,
        )
    )
    newest = (
        select(ui_sessions.c.id_hash)
        .where(ui_sessions.c.api_key_id == key.id)
        .order_by(ui_sessions.c.created_us.desc(), ui_sessions.c.id_hash)
        .limit(MAX_SESSIONS_PER_KEY)
    )
    kept = list(connection.execute(newest).scalars())
    connection.execute(
        delete(ui_sessions).where(
            ui_sessions.c.api_key_id == key.id, ui_sessions.c.id_hash.not_in(kept)
        )
    )
    return session_id


def resolve(engine: Engine, session_id: str, *, now_us: int, idle_us: int) -> ApiKey | None:
    """The live key behind a session, or None: unknown, expired, idle too long, or its key
    revoked. A session seen again has its idle deadline moved (at most once a minute)."""
    digest = session_hash(session_id)
    with engine.connect() as connection:
        row = connection.execute(
            select(ui_sessions.c.last_seen_us, *KEY_COLUMNS)
            .join(api_keys, api_keys.c.id == ui_sessions.c.api_key_id)
            .where(
                ui_sessions.c.id_hash == digest,
                ui_sessions.c.expires_us > now_us,
                ui_sessions.c.last_seen_us > now_us - idle_us,
                api_keys.c.revoked_us.is_(None),
                # The key's tenant, not only its id: a session never crosses tenants.
                api_keys.c.tenant == ui_sessions.c.tenant,
            )
        ).first()
    if row is None:
        return None
    if now_us - row.last_seen_us >= TOUCH_EVERY_US:
        # Its own write transaction: the read above was outside it, and SQLite cannot turn
        # a read into a write once another writer has committed since.
        with side_write_transaction(engine) as connection:
            connection.execute(
                update(ui_sessions)
                .where(ui_sessions.c.id_hash == digest)
                .values(last_seen_us=now_us)
            )
    return key_from_row(row)


def end(connection: Connection, session_id: str) -> bool:
    """Sign-out: whether there was such a session."""
    deleted = connection.execute(
        delete(ui_sessions).where(ui_sessions.c.id_hash == session_hash(session_id))
    )
    return deleted.rowcount > 0


def end_for_key(connection: Connection, key_id: str) -> int:
    """Every session of one API key, as its revocation ends them; how many there were."""
    deleted = connection.execute(delete(ui_sessions).where(ui_sessions.c.api_key_id == key_id))
    return deleted.rowcount


def purge_expired(connection: Connection, *, now_us: int, idle_us: int) -> int:
    """Delete the sessions that can no longer resolve; how many there were."""
    deleted = connection.execute(
        delete(ui_sessions).where(
            or_(
                ui_sessions.c.expires_us <= now_us,
                ui_sessions.c.last_seen_us <= now_us - idle_us,
            )
        )
    )
    return deleted.rowcount
