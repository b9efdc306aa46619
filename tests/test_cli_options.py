"""`prov`'s shared options: `--db`/`--key-file` before or after the subcommand, and the one
time parser every time option uses (service.cli.times)."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.cli.main import cli
from service.cli.times import format_time, parse_time


@pytest.fixture(autouse=True)
def _no_prov_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The options under test must decide alone, whatever the caller's shell exports.
    for name in list(os.environ):
        if name.startswith("PROV_"):
            monkeypatch.delenv(name)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def json_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line]


# --- --db and --key-file, before and after the subcommand -----------------------------------

SPELLINGS = ["before", "after", "mixed"]


def placed(spelling: str, command: list[str], db: str, key: Path) -> list[str]:
    """`command` with the ledger options before it, after it, or one on each side."""
    db_option, key_option = ["--db", db], ["--key-file", str(key)]
    if spelling == "before":
        return [*db_option, *key_option, *command]
    if spelling == "after":
        return [*command, *db_option, *key_option]
    return [*db_option, *command, *key_option]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_ledger_options_work_before_and_after_the_subcommand(
    spelling: str, db_url: str, tmp_path: Path
) -> None:
    key = tmp_path / "spelled.key"

    def prov(*command: str) -> Result:
        return ok(*placed(spelling, list(command), db_url, key))

    assert "ledger ready" in prov("init").stdout
    assert key.exists()
    demo = prov("demo", "--records", "3", "--seed", "7").stdout
    assert "appended 3 demo decisions" in demo
    size = re.search(r"log size (\d+)", demo)
    assert size is not None
    # The demo also enrolls principals; verify reads the same log the demo wrote.
    assert prov("verify").stdout.startswith(f"ok: size {size[1]},")
    [entry] = json_lines(prov("show", "2"))
    assert entry["entry"]["index"] == 2  # type: ignore[index]
    [page] = json_lines(prov("search", "--tenant", "acme", "--json"))
    assert isinstance(page, dict)
    assert len(page["decisions"]) == 3  # type: ignore[arg-type]


def test_the_option_after_the_subcommand_wins(db_url: str, tmp_path: Path) -> None:
    loser_db, loser_key = tmp_path / "loser.db", tmp_path / "loser.key"
    key = tmp_path / "winner.key"
    ok("--db", str(loser_db), "--key-file", str(loser_key), "init", "--db", db_url)
    # The database came from after the subcommand, the key file from before it.
    assert not loser_db.exists()
    assert loser_key.exists()
    ok("--db", str(loser_db), "init", "--db", db_url, "--key-file", str(key))
    assert key.exists()
    assert not loser_db.exists()
    # Both keys were made for one database: its signing key is the first one.
    result = run("--key-file", str(key), "verify", "--db", db_url)
    assert result.exit_code != 0
    assert ok("verify", "--db", db_url, "--key-file", str(loser_key)).stdout.startswith("ok:")


def test_ledger_options_before_a_command_without_a_ledger_are_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "alice.pem"
    key_file.write_bytes(_pem(Ed25519PrivateKey.generate()))
    result = ok("--db", str(tmp_path / "unused.db"), "principal", "did", str(key_file))
    assert result.stdout.startswith("did:key:z6Mk")
    assert not (tmp_path / "unused.db").exists()


# --- the time parser ------------------------------------------------------------------------

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-03-01T09:30:00+02:00", datetime(2026, 3, 1, 9, 30, tzinfo=PLUS_TWO)),
        ("2026-03-01T09:30:00-05:30", datetime(2026, 3, 1, 15, 0, tzinfo=UTC)),
        ("2026-03-01T09:30:00Z", datetime(2026, 3, 1, 9, 30, tzinfo=UTC)),
        ("2026-03-01t09:30:00z", datetime(2026, 3, 1, 9, 30, tzinfo=UTC)),
        ("2026-03-01 09:30:00+02:00", datetime(2026, 3, 1, 7, 30, tzinfo=UTC)),
        ("2026-03-01T09:30:00.25Z", datetime(2026, 3, 1, 9, 30, 0, 250_000, tzinfo=UTC)),
        ("2026-03-01T09:30:00.123456789Z", datetime(2026, 3, 1, 9, 30, 0, 123_456, tzinfo=UTC)),
        # Without an offset, UTC; a bare date is its midnight.
        ("2026-03-01T09:30", datetime(2026, 3, 1, 9, 30, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_times_are_rfc3339_and_utc_without_an_offset(text: str, moment: datetime) -> None:
    parsed = parse_time(text)
    assert parsed.tzinfo is not None
    assert parsed == moment


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow",
        "",
        "2026-02-30",  # no such day
        "2026-03-01T24:00:00Z",
        "2026-03-01T09:30:00+02",  # an offset needs its minutes
        "2026-03-01T09:30:00+24:00",
        "2026-W09-7",  # ISO 8601 week date, not RFC 3339
        "20260301T093000Z",  # ISO 8601 basic format
        "\uff12\uff10\uff12\uff16-03-01",  # fullwidth digits
        "2026-03-01T09:30:00Z trailing",
    ],
)
def test_times_that_are_not_rfc3339_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"time|offset"):
        parse_time(text)


def test_format_time_is_utc_with_z() -> None:
    assert format_time(parse_time("2026-03-01T09:30:00+02:00")) == "2026-03-01T07:30:00Z"


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_delegate_expires_takes_an_offset(tmp_path: Path) -> None:
    issuer = tmp_path / "issuer.pem"
    issuer.write_bytes(_pem(Ed25519PrivateKey.generate()))
    audience = ok("principal", "did", str(issuer)).stdout.strip()
    [made] = json_lines(
        ok(
            *("delegate", "--issuer-key", str(issuer), "--audience", audience),
            *("--command", "/loan", "--out", str(tmp_path / "chain.txt")),
            *("--expires", "2030-01-01T12:00:00+02:00", "--not-before", "2029-12-31"),
        )
    )
    assert made["exp"] == int(datetime(2030, 1, 1, 10, 0, tzinfo=UTC).timestamp())
    # A naive time is UTC, not the machine's zone.
    [naive] = json_lines(
        ok(
            *("delegate", "--issuer-key", str(issuer), "--audience", audience),
            *("--command", "/loan", "--out", str(tmp_path / "chain2.txt")),
            *("--expires", "2030-01-01T12:00:00"),
        )
    )
    assert naive["exp"] == int(datetime(2030, 1, 1, 12, 0, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    "command",
    [
        ["delegate", "--issuer-key", "k.pem", "--audience", "did:key:x", "--command", "/a"],
        ["search", "--tenant", "acme", "--from"],
        ["search", "--tenant", "acme", "--to"],
        ["report", "cost", "--dir", "exports", "--since"],
        ["report", "cost", "--dir", "exports", "--until"],
        ["report", "freshness", "--dir", "exports", "--at"],
        ["keys", "add", "--tenant", "acme", "--service", "s", "--public-key", "k.pem"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_every_time_option_refuses_a_bad_time_as_a_usage_error(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "k.pem").write_bytes(_pem(Ed25519PrivateKey.generate()))
    if command[0] == "delegate":
        command = [*command, "--out", "chain.txt", "--expires"]
    elif command[0] == "keys":
        command = [*command, "--valid-until"]
    monkeypatch.chdir(tmp_path)
    result = run(*command, "2026-03-01T09:30:00+0200")
    assert result.exit_code == 2
    assert "is not an RFC 3339 time" in result.output


def test_search_from_compares_instants_across_offsets(db_url: str, tmp_path: Path) -> None:
    key = tmp_path / "search.key"
    ok("init", "--db", db_url, "--key-file", str(key))
    ok("demo", "--records", "4", "--seed", "3", "--db", db_url, "--key-file", str(key))
    latest = max(
        parse_time(str(decision["occurred_at"]))
        for decision in _decisions(db_url, key, "--limit", "500")
    )
    # The same instant, written in another zone: the newest decision is at or after it.
    plus_two = latest.astimezone(PLUS_TWO).isoformat()
    assert plus_two.endswith("+02:00")
    assert len(_decisions(db_url, key, "--from", plus_two)) >= 1
    later = (latest + timedelta(seconds=1)).astimezone(PLUS_TWO).isoformat()
    assert _decisions(db_url, key, "--from", later) == []
    assert len(_decisions(db_url, key, "--to", later)) == 4


def test_keys_add_valid_from_keeps_the_offset(db_url: str, tmp_path: Path) -> None:
    key = tmp_path / "keys.key"
    ok("init", "--db", db_url, "--key-file", str(key))
    public = tmp_path / "service.pub.pem"
    public.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    [registered] = json_lines(
        ok(
            *("keys", "add", "--tenant", "acme", "--service", "svc"),
            *("--public-key", str(public), "--valid-from", "2026-03-01T09:30:00+02:00"),
            *("--db", db_url, "--key-file", str(key)),
        )
    )
    assert parse_time(str(registered["valid_from"])) == datetime(2026, 3, 1, 7, 30, tzinfo=UTC)


def _decisions(db_url: str, key: Path, *filters: str) -> list[dict[str, object]]:
    [page] = json_lines(
        ok("search", "--tenant", "acme", "--json", *filters, "--db", db_url, "--key-file", str(key))
    )
    assert isinstance(page, dict)
    decisions = page["decisions"]
    assert isinstance(decisions, list)
    return decisions
