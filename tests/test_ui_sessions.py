"""The auditor pages' server-side sessions, their cookie, the pages' security headers, the
metrics content type, and the API key cache under a flood of random tokens.

The session store runs on both engines; the HTTP checks run against a real `prov serve`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import Engine, event, inspect, select, update

from ledger.keys import ui_sessions
from ledger.keys.apikeys import ApiKey, Role, create_api_key, revoke_api_key, token_hash
from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from ledger.storage.migrate import _alembic_config, migrate
from ledger.storage.schema import api_keys
from ledger.storage.schema import ui_sessions as sessions_table
from query.ui.pages import SECURITY_HEADERS
from service.settings import Settings
from service.web.auth import MISS_LIMIT, ApiKeyCache
from tests.http_server import Server, prepared_server

# For checks of the HTTP layer alone, where the database engine makes no difference.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
HOUR_US = 3600 * 1_000_000
MINUTE_US = 60 * 1_000_000
NOW_US = 1_800_000_000_000_000
CSP = dict(SECURITY_HEADERS)[b"content-security-policy"].decode()
PAGE_HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "same-origin",
}


def new_key(engine: Engine, role: Role = Role.AUDIT, tenant: str = "acme") -> tuple[ApiKey, str]:
    with engine.begin() as connection:
        return create_api_key(connection, tenant=tenant, role=role, name="t", now_us=NOW_US)


def start(engine: Engine, key: ApiKey, *, now_us: int = NOW_US, ttl_us: int = HOUR_US) -> str:
    with engine.begin() as connection:
        return ui_sessions.create(connection, key, now_us=now_us, ttl_us=ttl_us)


def resolve(engine: Engine, session_id: str, *, now_us: int = NOW_US) -> ApiKey | None:
    return ui_sessions.resolve(engine, session_id, now_us=now_us, idle_us=HOUR_US)


def session_rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(sessions_table)))


# The store, on both engines.


def test_a_session_is_stored_only_as_its_hash_and_resolves_to_its_key(ledger: Ledger) -> None:
    key, token = new_key(ledger.engine)
    session_id = start(ledger.engine, key)
    assert token not in session_id
    assert len(session_id) >= 43
    [row] = session_rows(ledger.engine)
    assert row.id_hash == hashlib.sha256(session_id.encode()).digest()
    assert row.tenant == "acme"
    assert row.api_key_id == key.id
    stored = repr(tuple(row))
    assert session_id not in stored
    assert session_id.encode() not in row.id_hash
    assert resolve(ledger.engine, session_id) == key
    assert resolve(ledger.engine, session_id + "x") is None
    assert resolve(ledger.engine, secrets.token_urlsafe(32)) is None
    # The API key's own token is not a session id.
    assert resolve(ledger.engine, token) is None


def test_a_session_ends_at_its_ttl_and_after_its_idle_time(ledger: Ledger) -> None:
    key, _ = new_key(ledger.engine)
    session_id = start(ledger.engine, key, ttl_us=8 * HOUR_US)
    # Seen every 50 minutes, it stays (each visit moves the idle deadline)...
    seen = NOW_US
    for _ in range(9):
        seen += 50 * MINUTE_US
        if seen >= NOW_US + 8 * HOUR_US:
            break
        assert resolve(ledger.engine, session_id, now_us=seen) == key, seen
    # ...but not past its lifetime, however recently it was seen.
    assert resolve(ledger.engine, session_id, now_us=NOW_US + 8 * HOUR_US) is None
    idle = start(ledger.engine, key, ttl_us=8 * HOUR_US)
    assert resolve(ledger.engine, idle, now_us=NOW_US + HOUR_US - 1) == key
    # That visit moved the idle deadline: half an hour past the first one, it still stands.
    half_past = NOW_US + HOUR_US + 30 * MINUTE_US
    assert resolve(ledger.engine, idle, now_us=half_past) == key
    # An hour unused ends it.
    assert resolve(ledger.engine, idle, now_us=half_past + HOUR_US) is None
    with ledger.engine.begin() as connection:
        purged = ui_sessions.purge_expired(connection, now_us=NOW_US + 8 * HOUR_US, idle_us=HOUR_US)
    assert purged == 2
    assert session_rows(ledger.engine) == []


def test_sign_out_and_revocation_end_sessions(ledger: Ledger) -> None:
    key, _ = new_key(ledger.engine)
    other, _ = new_key(ledger.engine)
    first, second = start(ledger.engine, key), start(ledger.engine, key)
    kept = start(ledger.engine, other)
    with ledger.engine.begin() as connection:
        assert ui_sessions.end(connection, first) is True
        assert ui_sessions.end(connection, first) is False
    assert resolve(ledger.engine, first) is None
    assert resolve(ledger.engine, second) == key
    with ledger.engine.begin() as connection:
        revoke_api_key(connection, "acme", key.id, now_us=NOW_US + 1)
    assert resolve(ledger.engine, second) is None
    assert [row.api_key_id for row in session_rows(ledger.engine)] == [other.id]
    assert resolve(ledger.engine, kept) == other
    # A key revoked by any other path: its sessions stop resolving even while rows remain.
    with ledger.engine.begin() as connection:
        connection.execute(
            update(api_keys).where(api_keys.c.id == other.id).values(revoked_us=NOW_US)
        )
    assert resolve(ledger.engine, kept) is None
    with ledger.engine.begin() as connection:
        assert ui_sessions.end_for_key(connection, other.id) == 1


def test_one_key_holds_a_bounded_number_of_sessions(ledger: Ledger) -> None:
    key, _ = new_key(ledger.engine)
    made = [
        start(ledger.engine, key, now_us=NOW_US + n)
        for n in range(ui_sessions.MAX_SESSIONS_PER_KEY + 5)
    ]
    assert len(session_rows(ledger.engine)) == ui_sessions.MAX_SESSIONS_PER_KEY
    assert resolve(ledger.engine, made[0], now_us=NOW_US + 100) is None
    assert resolve(ledger.engine, made[-1], now_us=NOW_US + 100) == key


def test_the_migration_adds_and_drops_the_sessions_table(ledger: Ledger) -> None:
    key, _ = new_key(ledger.engine)
    start(ledger.engine, key)
    with ledger.engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0005")
    assert "ui_sessions" not in inspect(ledger.engine).get_table_names()
    migrate(ledger.engine)
    assert "ui_sessions" in inspect(ledger.engine).get_table_names()
    indexes = {index["name"] for index in inspect(ledger.engine).get_indexes("ui_sessions")}
    assert indexes >= {"ix_ui_sessions_api_key_id", "ix_ui_sessions_expires_us"}
    # Every browser was signed out; a new session works.
    assert session_rows(ledger.engine) == []
    assert resolve(ledger.engine, start(ledger.engine, key)) == key


# The API key cache, on both engines.


def count_key_queries(engine: Engine) -> list[int]:
    counter = [0]

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "api_keys" in statement:
            counter[0] += 1

    event.listen(engine, "before_cursor_execute", seen)
    return counter


@pytest.mark.slow
def test_random_tokens_never_evict_a_valid_key(ledger: Ledger) -> None:
    _, token = new_key(ledger.engine)
    queries = count_key_queries(ledger.engine)
    cache = ApiKeyCache(ledger.engine, ttl_s=3600)

    async def flood() -> None:
        assert await cache.lookup(token) is not None
        assert queries[0] == 1
        for n in range(20_000):
            # Most look like tokens and reach the database; the rest are rejected unread.
            fake = f"prov_{secrets.token_hex(8)}_{n}" if n % 100 == 0 else secrets.token_hex(8)
            assert await cache.lookup(fake) is None
        flooded = queries[0]
        assert flooded == 1 + 200
        key = await cache.lookup(token)
        assert key is not None
        assert key.tenant == "acme"
        assert queries[0] == flooded  # served from the cache
        # A token retried is a cached miss, until misses evict it.
        repeated = "prov_0000000000000000_retry"
        assert await cache.lookup(repeated) is None
        assert await cache.lookup(repeated) is None
        assert queries[0] == flooded + 1

    asyncio.run(flood())
    assert MISS_LIMIT < 20_000


def test_without_a_cache_lifetime_every_lookup_asks_the_database(ledger: Ledger) -> None:
    key, token = new_key(ledger.engine)
    cache = ApiKeyCache(ledger.engine, ttl_s=0)

    async def twice() -> None:
        assert await cache.lookup(token) == key
        with ledger.engine.begin() as connection:
            revoke_api_key(connection, "acme", key.id, now_us=NOW_US + 1)
        assert await cache.lookup(token) is None

    asyncio.run(twice())


# Over HTTP, against a real server.


@pytest.fixture
def proxied(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server that believes `X-Forwarded-Proto`, with one-second sessions."""
    running = prepared_server(
        db_url, tmp_path, PROV_TRUST_PROXY_HEADERS="1", PROV_UI_SESSION_TTL_SECONDS="1"
    )
    running.start()
    yield running
    running.stop()


def sign_in(server: Server, key: str, **headers: str) -> httpx.Response:
    answer = httpx.post(f"{server.url}/ui/login", data={"api_key": key}, headers=headers)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/"
    return answer


def session_cookie(answer: httpx.Response) -> tuple[str, dict[str, Any]]:
    [header] = [
        value
        for value in answer.headers.get_list("set-cookie")
        if value.startswith("prov_ui_session=")
    ]
    morsel = SimpleCookie(header)["prov_ui_session"]
    return morsel.value, {name: morsel[name] for name in morsel if morsel[name]}


def page(server: Server, session_id: str, path: str = "/ui/log") -> httpx.Response:
    return httpx.get(f"{server.url}{path}", cookies={"prov_ui_session": session_id})


def key_id(token: str) -> str:
    return token.split("_")[1]


def test_the_cookie_holds_a_session_id_and_sign_out_ends_it(server: Server) -> None:
    key = server.api_key("audit")
    session_id, attributes = session_cookie(sign_in(server, key))
    assert key not in session_id
    assert key_id(key) not in session_id
    assert token_hash(key).hex() not in session_id
    assert attributes["httponly"] is True
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/ui"
    assert "secure" not in attributes  # plain HTTP, no trusted proxy
    engine_rows = session_rows_of(server)
    assert [row.id_hash for row in engine_rows] == [hashlib.sha256(session_id.encode()).digest()]
    assert page(server, session_id).status_code == 200
    # The key itself, in either cookie, signs no one in.
    for name in ("prov_ui_session", "prov_ui_key"):
        forged = httpx.get(f"{server.url}/ui/log", cookies={name: key})
        assert forged.status_code == 303
        assert forged.headers["location"] == "/ui/login"
        # The browser is told to forget it.
        assert f'{name}=""' in forged.headers["set-cookie"]
    # Sign-out ends the session on the server: the cookie copied before it is worthless.
    out = httpx.post(f"{server.url}/ui/logout", cookies={"prov_ui_session": session_id})
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login"
    assert 'prov_ui_session=""' in out.headers["set-cookie"]
    assert session_rows_of(server) == []
    stale = page(server, session_id)
    assert stale.status_code == 303
    assert stale.headers["location"] == "/ui/login"


def session_rows_of(server: Server) -> list[Any]:
    engine = make_engine(server.db_url)
    try:
        return session_rows(engine)
    finally:
        engine.dispose()


def test_revoking_the_key_ends_its_sessions_at_once(server: Server) -> None:
    key = server.api_key("audit")
    first, _ = session_cookie(sign_in(server, key))
    second, _ = session_cookie(sign_in(server, key))
    assert page(server, first).status_code == 200
    revoked = httpx.delete(
        f"{server.url}/v1/api-keys/{key_id(key)}", headers=server.auth(server.admin_key)
    )
    assert revoked.status_code == 200, revoked.text
    assert session_rows_of(server) == []
    for session_id in (first, second):
        ended = page(server, session_id)
        assert ended.status_code == 303
        assert ended.headers["location"] == "/ui/login"


def test_secure_behind_a_trusted_proxy_and_expiry(proxied: Server) -> None:
    key = proxied.api_key("audit")
    _, plain = session_cookie(sign_in(proxied, key))
    assert "secure" not in plain
    session_id, behind = session_cookie(sign_in(proxied, key, **{"X-Forwarded-Proto": "https"}))
    assert behind["secure"] is True
    [row] = [
        row
        for row in session_rows_of(proxied)
        if row.id_hash == hashlib.sha256(session_id.encode()).digest()
    ]
    assert row.expires_us - row.created_us == 1_000_000  # PROV_UI_SESSION_TTL_SECONDS
    while time.time() * 1_000_000 <= row.expires_us:
        time.sleep(0.1)
    expired = page(proxied, session_id)
    assert expired.status_code == 303
    assert expired.headers["location"] == "/ui/login"


@SQLITE_ONLY
def test_an_untrusted_forwarded_proto_is_ignored(server: Server) -> None:
    _, attributes = session_cookie(
        sign_in(server, server.api_key("audit"), **{"X-Forwarded-Proto": "https"})
    )
    assert "secure" not in attributes


@SQLITE_ONLY
def test_every_answer_under_ui_carries_the_security_headers(server: Server) -> None:
    session_id, _ = session_cookie(sign_in(server, server.api_key("audit")))
    cookies = {"prov_ui_session": session_id}
    answers = {
        "page": httpx.get(f"{server.url}/ui/", cookies=cookies),
        "bad filter": httpx.get(f"{server.url}/ui/?output=no-equals", cookies=cookies),
        "no decision": httpx.get(f"{server.url}/ui/decisions/absent", cookies=cookies),
        "no page": httpx.get(f"{server.url}/ui/no-such-page", cookies=cookies),
        "no method": httpx.put(f"{server.url}/ui/log", cookies=cookies),
        "no stylesheet": httpx.get(f"{server.url}/ui/static/absent.css"),
        "signed out": httpx.get(f"{server.url}/ui/log"),
        "unknown key": httpx.post(f"{server.url}/ui/login", data={"api_key": "prov_x_y"}),
        "cross site": httpx.post(
            f"{server.url}/ui/logout", headers={"Origin": "https://elsewhere.example"}
        ),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "page": 200,
        "bad filter": 400,
        "no decision": 404,
        "no page": 404,
        "no method": 405,
        "no stylesheet": 404,
        "signed out": 303,
        "unknown key": 401,
        "cross site": 403,
    }
    for name, answer in answers.items():
        for header, value in PAGE_HEADERS.items():
            assert answer.headers.get_list(header) == [value], (name, header)
        assert answer.headers.get_list("content-security-policy") == [CSP], name
        if answer.status_code != 303:
            assert answer.headers["content-type"].startswith("text/html"), name
    # The API keeps its problem documents, without the pages' headers.
    api = httpx.get(f"{server.url}/v1/no-such-route")
    assert api.headers["content-type"].startswith("application/problem+json")
    assert "content-security-policy" not in api.headers


@SQLITE_ONLY
def test_metrics_name_the_charset_once(server: Server) -> None:
    answer = httpx.get(f"{server.url}/metrics")
    assert answer.status_code == 200
    content_type = answer.headers["content-type"]
    assert content_type.startswith("text/plain")
    assert content_type.count("charset") == 1, content_type


def test_session_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "PROV_UI_SESSION_TTL_SECONDS": "60",
            "PROV_UI_SESSION_IDLE_SECONDS": "30",
            "PROV_TRUST_PROXY_HEADERS": "true",
        }
    )
    assert (settings.ui_session_ttl_seconds, settings.ui_session_idle_seconds) == (60, 30)
    assert settings.trust_proxy_headers is True
    defaults = Settings()
    assert defaults.trust_proxy_headers is False
    assert defaults.ui_session_ttl_seconds == 8 * 3600
    with pytest.raises(ValueError, match="ui_session_ttl_seconds"):
        Settings.from_env({"PROV_UI_SESSION_TTL_SECONDS": "0"})
