"""The service key helpers and the service command line of the SDK, against a real
`prov serve`: a key made once and kept private, registered with an admin key, and the
`register` / `run` start the examples are built on."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ingest.client import ConnectionFailed, ProblemError
from ingest.client.service_cli import register_command, service_client, service_parser
from ingest.client.service_key import load_or_create_key, register_key
from ledger.keys.signing import SigningKey
from ledger.records.decision import Model, Output
from tests.http_server import TENANT, Server, free_port

SERVICE = "order-router"


def test_a_service_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "service.key"
    key, created = load_or_create_key(path)
    assert created
    assert path.stat().st_mode & 0o777 == 0o600
    again, created_again = load_or_create_key(path)
    assert not created_again
    assert again.public_key == key.public_key


@pytest.mark.slow
def test_a_registered_key_signs_what_the_ledger_takes(server: Server, tmp_path: Path) -> None:
    key, _ = load_or_create_key(tmp_path / "service.key")
    registered = register_key(server.url + "/", server.admin_key, SERVICE, key)
    assert (registered["tenant"], registered["service"]) == (TENANT, SERVICE)
    assert registered["public_key"] == key.public_key.hex()
    # Valid from a little before now: a decision made right away is inside the window.
    valid_from = datetime.fromisoformat(registered["valid_from"])
    assert valid_from < datetime.now().astimezone()
    # The same registration again answers the key as it stands.
    again = register_key(server.url, server.admin_key, SERVICE, key, valid_from=valid_from)
    assert again == registered

    args = service_parser(None, key_file=str(tmp_path / "service.key")).parse_args(
        ["run", "--url", server.url, "--api-key", server.api_key("ingest")]
    )
    client = service_client(args, tenant=TENANT, service=SERVICE)
    assert client is not None
    with client:
        decision = client.new_decision(
            "order.route",
            inputs={"order": 1},
            model=Model(provider="local", name="rules", version="1"),
            output=Output(decision={"carrier": "UPS"}),
        )
        assert client.append(decision).index == 0


@pytest.mark.slow
def test_a_refused_or_unreachable_registration_says_why(server: Server) -> None:
    key = SigningKey.generate()
    with pytest.raises(ProblemError) as refused:
        register_key(server.url, "not-a-key", SERVICE, key)
    assert refused.value.status == 401
    register_key(server.url, server.admin_key, SERVICE, key)
    for service in ("another-service", SERVICE):  # registered already, other times
        with pytest.raises(ProblemError) as taken:
            register_key(server.url, server.admin_key, service, key)
        assert (taken.value.status, taken.value.kind) == (409, "key-conflict")
    with pytest.raises(ValueError, match="valid_until must be timezone-aware"):
        register_key(server.url, server.admin_key, SERVICE, key, valid_until=datetime(2030, 1, 1))
    with pytest.raises(ConnectionFailed, match="/v1/keys"):
        register_key(f"http://127.0.0.1:{free_port()}", server.admin_key, SERVICE, key)


@pytest.mark.slow
def test_the_command_line_registers_once_then_runs(
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key_file = tmp_path / "order-router.key"
    monkeypatch.setenv("PROV_URL", server.url)
    monkeypatch.setenv("PROV_SERVICE_KEY_FILE", str(key_file))
    monkeypatch.delenv("PROV_API_KEY", raising=False)
    monkeypatch.delenv("PROV_ADMIN_KEY", raising=False)
    parser = service_parser("A service.\n\nMore.", key_file="ignored.key")
    assert parser.description == "A service."

    # Without the keys each command needs, nothing is sent: usage errors.
    args = parser.parse_args(["register"])
    assert register_command(args, SERVICE) == 2
    assert "--admin-key or PROV_ADMIN_KEY" in capsys.readouterr().err
    assert not key_file.exists()
    assert parser.parse_args([]).command == "run"
    assert service_client(parser.parse_args([]), tenant=TENANT, service=SERVICE) is None
    assert "--api-key or PROV_API_KEY" in capsys.readouterr().err
    args = parser.parse_args(["--api-key", "k"])
    assert service_client(args, tenant=TENANT, service=SERVICE) is None
    assert f"no service key at {key_file}" in capsys.readouterr().err

    # Options default to the environment as it is when the parser is made.
    monkeypatch.setenv("PROV_ADMIN_KEY", server.admin_key)
    parser = service_parser(None, key_file="ignored.key")
    args = parser.parse_args(["register"])
    assert (args.url, args.key_file) == (server.url, key_file)
    assert register_command(args, SERVICE) == 0
    out, err = capsys.readouterr()
    assert f"created service key {key_file}" in err
    assert json.loads(out)["service"] == SERVICE
    # Registered already: refused, and the key file stays as it was.
    made = key_file.read_bytes()
    assert register_command(args, "another-service") == 1
    assert "not registered: 409" in capsys.readouterr().err
    assert key_file.read_bytes() == made

    args = parser.parse_args(["run", "--api-key", server.api_key("ingest")])
    client = service_client(args, tenant=TENANT, service=SERVICE)
    assert client is not None
    assert client.verifier_key is None  # none given: fetched from the server on first use
    client.close()


def test_a_naive_valid_from_is_refused_before_sending() -> None:
    # Port 9 (discard) is never contacted: the time is checked first.
    with pytest.raises(ValueError, match="valid_from must be timezone-aware"):
        register_key(
            "http://127.0.0.1:9",
            "key",
            SERVICE,
            SigningKey.generate(),
            valid_from=datetime.now() - timedelta(minutes=1),
        )
