"""Helpers shared by the integration tests: signed demo envelopes, keys and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from sqlalchemy import Engine, func, select

from ledger.keys.keyring import register_key
from ledger.keys.signing import SigningKey, sign_decision
from ledger.records.decision import Decision
from ledger.storage.schema import checkpoints, log_entries, service_keys, tree_nodes
from service.demo.traffic import demo_envelopes as service_demo_envelopes
from service.demo.traffic import demo_signing_key, register_demo_keys

PROV = str(Path(sys.executable).with_name("prov"))


def demo_envelopes(
    engine: Engine, count: int, *, seed: int = 1, tenant: str = "acme"
) -> list[bytes]:
    """`count` demo decisions signed with the (registered) demo keys."""
    register_demo_keys(engine, tenant)
    return list(service_demo_envelopes(count, seed=seed, tenant=tenant))


def sign(decision: Decision, key: SigningKey | None = None) -> bytes:
    """Sign with `key`, or with the demo key of the decision's tenant and service."""
    return sign_decision(decision, key or demo_signing_key(decision.tenant, decision.service))


def register(
    engine: Engine,
    key: SigningKey,
    *,
    tenant: str,
    service: str,
    valid_from: datetime = datetime(2000, 1, 1, tzinfo=UTC),
    valid_until: datetime | None = None,
) -> str:
    with engine.begin() as connection:
        return register_key(
            connection,
            tenant=tenant,
            service=service,
            public_key=key.public_key,
            valid_from=valid_from,
            valid_until=valid_until,
            now=datetime.now(UTC),
        ).keyid


@dataclass(frozen=True)
class TableCounts:
    entries: int
    nodes: int
    checkpoints: int
    keys: int


def table_counts(engine: Engine) -> TableCounts:
    with engine.connect() as connection:
        return TableCounts(
            *(
                connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (log_entries, tree_nodes, checkpoints, service_keys)
            )
        )


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict[str, object]]:
        return [msgspec.json.decode(line) for line in self.out.splitlines() if line]


def prov(
    args: Sequence[str], *, db: str, key: Path, stdin: bytes | None = None, cwd: Path | None = None
) -> Run:
    """Run the installed `prov` command as a user would, in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
    done = subprocess.run(
        [PROV, *args, "--db", db, "--key-file", str(key)],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())
