"""Every command of the CLI contract, run as a separate process on each engine."""

from __future__ import annotations

from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.log import merkle
from ledger.log.note import NoteVerifier, open_checkpoint
from tests.support import prov


def test_the_cli_contract_end_to_end(db_url: str, key_path: Path, tmp_path: Path) -> None:
    def run(*args: str, stdin: bytes | None = None) -> str:
        done = prov(list(args), db=db_url, key=key_path, stdin=stdin)
        assert done.code == 0, done.err
        return done.out

    assert "ledger ready" in run("init")
    assert key_path.exists()
    assert "ledger ready" in run("init")  # again: a no-op
    assert "appended 25 demo decisions" in run("demo", "--records", "25", "--seed", "7")

    # The demo enrolls its three named principals and registers the two versions of its
    # lending policy first, as ledger records.
    size = 25 + 3 + 2
    verified = run("verify")
    assert verified.startswith(f"ok: size {size}, root ")
    root_hex = verified.split("root ")[1].split(",")[0]

    verifier_key = run("checkpoint", "--verifier-key").strip()
    verifier = NoteVerifier.parse(verifier_key)
    checkpoint = open_checkpoint(run("checkpoint"), verifier)
    assert (checkpoint.size, checkpoint.root_hash.hex()) == (size, root_hex)
    assert run("verify", "--verifier-key", verifier_key).startswith(f"ok: size {size}")

    proof = msgspec.json.decode(run("proof", "inclusion", "7"))
    assert set(proof) == {"index", "tree_size", "leaf_hash", "root_hash", "proof"}
    assert (proof["index"], proof["tree_size"], proof["root_hash"]) == (7, size, root_hex)
    assert merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        7,
        size,
        [bytes.fromhex(node) for node in proof["proof"]],
        checkpoint.root_hash,
    )
    older = msgspec.json.decode(run("proof", "inclusion", "7", "--size", "10"))
    assert older["tree_size"] == 10

    consistency = msgspec.json.decode(run("proof", "consistency", "10", str(size)))
    assert set(consistency) == {"old_size", "new_size", "old_root", "new_root", "proof"}
    assert consistency["old_root"] == older["root_hash"]
    assert merkle.verify_consistency(
        10,
        size,
        bytes.fromhex(consistency["old_root"]),
        checkpoint.root_hash,
        [bytes.fromhex(node) for node in consistency["proof"]],
    )

    shown = msgspec.json.decode(run("show", "7"))
    assert shown["entry"]["index"] == 7
    assert shown["entry"]["leaf_hash"] == proof["leaf_hash"]
    assert shown["payload"]["id"] == shown["entry"]["id"]
    assert {
        k: v["status"] if isinstance(v, dict) else v for k, v in shown["verification"].items()
    } == {
        "leaf": "valid",
        "signature": "valid",
        "inclusion": "valid",
    }

    emitted = tmp_path / "more.ndjson"
    run("demo", "--records", "4", "--seed", "8", "--emit", str(emitted))
    receipts = [msgspec.json.decode(line) for line in run("append", str(emitted)).splitlines()]
    assert [r["index"] for r in receipts] == list(range(size, size + 4))
    assert all(r["status"] == "created" for r in receipts)
    retried = [
        msgspec.json.decode(line)
        for line in run("append", "-", stdin=emitted.read_bytes()).splitlines()
    ]
    assert [(r["index"], r["status"]) for r in retried] == [
        (i, "existing") for i in range(size, size + 4)
    ]
    assert run("verify", "--signatures").startswith(f"ok: size {size + 4}")


def test_key_registry_commands(db_url: str, key_path: Path, tmp_path: Path) -> None:
    assert prov(["init"], db=db_url, key=key_path).code == 0
    pem = tmp_path / "service.pub"
    public = Ed25519PrivateKey.generate().public_key()
    pem.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    added = prov(
        [
            "keys",
            "add",
            "--tenant",
            "acme",
            "--service",
            "router",
            "--public-key",
            str(pem),
            "--valid-from",
            "2026-01-01T00:00:00",
        ],
        db=db_url,
        key=key_path,
    )
    assert added.code == 0, added.err
    [key] = added.json_lines()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key["public_key"] == raw.hex()
    assert key["valid_from"] == "2026-01-01T00:00:00.000000Z"
    listed = prov(["keys", "list"], db=db_url, key=key_path).json_lines()
    assert [k["keyid"] for k in listed] == [key["keyid"]]
    revoked = prov(["keys", "revoke", str(key["keyid"])], db=db_url, key=key_path).json_lines()
    assert revoked[0]["revoked_at"] is not None


def test_errors_are_one_line_and_non_zero(db_url: str, key_path: Path, tmp_path: Path) -> None:
    not_initialized = prov(["verify"], db=db_url, key=key_path)
    assert not_initialized.code == 1
    assert not_initialized.err.strip() == (
        "prov: not-initialized: the ledger is not initialized; run `prov init`"
    )
    assert prov(["init"], db=db_url, key=key_path).code == 0
    for args, message in (
        (["proof", "inclusion", "0"], "index 0 is not in a tree of size 0"),
        (["show", "3"], "there is no entry 3"),
        (["append", str(tmp_path / "absent.ndjson")], "No such file or directory"),
        (["proof", "consistency", "2", "1"], "beyond the log's size"),
    ):
        run = prov(args, db=db_url, key=key_path)
        assert run.code != 0, args
        assert len(run.err.strip().splitlines()) == 1, run.err
        assert message in run.err, run.err
