"""What the replay batch, CLI and HTTP tests share: demo decisions in a real ledger, and a
model registry that routes the demo's models to a local model server.

No real model provider is reachable in the tests; `tests.model_servers.ModelServer` is a
local server that speaks the providers' wire protocols (OpenAI chat completions and the
Anthropic Messages API), and the registry below points every demo model at it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from ledger.storage.schema import replays
from tests.model_servers import ModelServer, providers_toml
from tests.support import prov

# A model the demo never recorded: what a shadow evaluation tries.
CANDIDATE = "candidate"


def demo_registry(
    server: ModelServer,
    *,
    timeout_s: float = 5.0,
    max_retries: int = 1,
    failure_threshold: int = 1_000,
    cooldown_s: float = 60.0,
    max_concurrency: int = 64,
) -> str:
    """A registry routing the demo's models (any version) and `CANDIDATE` to `server`:
    the OpenAI-format ones as provider ``oa``, Claude as provider ``an``. Backoffs are
    milliseconds, so that retry tests stay fast."""
    knobs = f"""timeout_s = {timeout_s}
connect_timeout_s = 2
max_concurrency = {max_concurrency}
retry = {{ max_retries = {max_retries}, base_s = 0.001, cap_s = 0.005, max_retry_after_s = 1 }}
breaker = {{ failure_threshold = {failure_threshold}, cooldown_s = {cooldown_s} }}
"""
    return (
        providers_toml(server, knobs)
        + f"""[[models]]
name = "gpt-4.1-mini"
provider = "oa"
upstream_model = "{{name}}-{{version}}"
price = {{ input_per_mtok = "0.40", output_per_mtok = "1.60" }}

[[models]]
name = "o4-mini"
provider = "oa"
upstream_model = "{{name}}-{{version}}"
price = {{ input_per_mtok = "1.10", output_per_mtok = "4.40" }}

[[models]]
name = "claude-sonnet-4"
provider = "an"
upstream_model = "{{name}}-{{version}}"
price = {{ input_per_mtok = "3", output_per_mtok = "15" }}

[[models]]
name = "{CANDIDATE}"
provider = "oa"
price = {{ input_per_mtok = "0.10", output_per_mtok = "0.40" }}
"""
    )


def write_registry(directory: Path, server: ModelServer, **knobs: Any) -> Path:
    path = directory / "registry.toml"
    path.write_text(demo_registry(server, **knobs), encoding="utf-8")
    return path


def record_demo(db_url: str, key: Path, records: int, *, seed: int = 7) -> None:
    """`prov demo`: signed demo decisions, with their blobs, in the ledger."""
    done = prov(["demo", "--records", str(records), "--seed", str(seed)], db=db_url, key=key)
    assert done.code == 0, done.err


def logged_verdicts(engine: Engine, batch: str) -> Counter[str]:
    """The verdicts of the batch's replays as the ledger's replay index holds them."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(replays.c.verdict, func.count())
            .where(replays.c.batch == batch)
            .group_by(replays.c.verdict)
        ).all()
    return Counter({str(verdict): int(count) for verdict, count in rows})
