"""`prov witness serve/key/show`: run a C2SP witness (c2sp.org/tlog-witness) that cosigns the
checkpoints of the logs it follows, print its verifier key, and show what it holds.

The witness's logic and state are `ledger.witness.witness` and `ledger.witness.state`, its
HTTP app `service.witness.app`; none of these commands opens a ledger. docs/witness.md
says what the witness checks and how to run it.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import click

from ledger.errors import NoteError, ProvError
from ledger.keys.ed25519 import SigningKey, load_signing_key, save_signing_key
from ledger.witness.cosignature import CosignatureSigner
from ledger.witness.protocol import ADD_CHECKPOINT_PATH
from ledger.witness.state import WitnessState, origin_sha256
from ledger.witness.witness import Witness, WitnessConfig
from service.cli.common import BadInput, Failed, emit

DEFAULT_PORT = 7380


def _key(path: Path) -> SigningKey:
    """The witness's Ed25519 key from `path`, created (PKCS#8 PEM, mode 0600) if missing."""
    if not path.exists():
        try:
            save_signing_key(SigningKey.generate(), path)
        except FileExistsError:
            pass  # another witness process created it first: use that one
        except OSError as error:
            raise Failed(f"--key-file {path}: {error.strerror or error}") from None
    try:
        return load_signing_key(path)
    except OSError as error:
        raise BadInput(f"--key-file {path}: {error.strerror or error}") from None
    except (ValueError, TypeError) as error:
        raise BadInput(
            f"--key-file {path} is not an unencrypted Ed25519 PEM key: {error}"
        ) from None


def _signer(name: str, key_file: Path) -> CosignatureSigner:
    try:
        return CosignatureSigner(name, _key(key_file))
    except NoteError as error:
        raise BadInput(f"--name: {error}") from None


def _time(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _listener(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address, family=family)
    except socket.gaierror as error:
        raise Failed(f"cannot listen on {host}: {error.strerror}") from None
    except OSError as error:
        # Not `strerror` alone: `create_server` appends the address to it.
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise Failed(f"cannot listen on {host}:{port}: {reason}") from None


_name_option = click.option(
    "--name",
    required=True,
    help="The witness's name, e.g. witness.example.com/w1: its key id depends on it",
)
_key_file_option = click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The witness's Ed25519 private key, PKCS#8 PEM; created (mode 0600) if missing",
)
_state_option = click.option(
    "--state",
    "state_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The witness's SQLite state file: the latest checkpoint cosigned per log",
)


@click.group("witness")
def witness() -> None:
    """A C2SP witness: cosigns the checkpoints of the logs it follows (docs/witness.md)."""


@witness.command("serve")
@_name_option
@_key_file_option
@_state_option
@click.option(
    "--log",
    "logs",
    multiple=True,
    required=True,
    metavar="[ORIGIN=]VKEY",
    help="A log to follow, by its note verifier key NAME+ID+KEY; its origin is the key's "
    "name unless given as ORIGIN=VKEY. Repeat it: several logs, or several keys of one log "
    "(key rotation)",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
def serve(
    name: str, key_file: Path, state_file: Path, logs: tuple[str, ...], host: str, port: int
) -> None:
    """Serve add-checkpoint and the monitoring checkpoint path in the foreground until
    interrupted; prints the witness's verifier key first."""
    signer = _signer(name, key_file)
    try:
        config = WitnessConfig.from_options(signer, list(logs))
    except NoteError as error:
        raise BadInput(f"--log: {error}") from None
    state = WitnessState(state_file)
    listener = _listener(host, port)
    # The server stack loads only here: `prov witness key` and `show` stay light.
    import uvicorn  # noqa: PLC0415

    from service.witness.app import witness_app  # noqa: PLC0415

    bound_host, bound_port = listener.getsockname()[:2]
    where = f"[{bound_host}]" if listener.family == socket.AF_INET6 else bound_host
    click.echo(f"witness verifier key: {signer.verifier.encode()}")
    click.echo(f"add-checkpoint: http://{where}:{bound_port}{ADD_CHECKPOINT_PATH}")
    for origin, keys in config.logs.items():
        held = state.latest(origin)
        since = f"cosigned up to size {held.size}" if held else "nothing cosigned yet"
        click.echo(
            f"following {origin} ({len(keys)} key{'s' if len(keys) > 1 else ''}; {since}); "
            f"monitoring: /{origin_sha256(origin)}/checkpoint"
        )
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = uvicorn.Server(
        uvicorn.Config(
            witness_app(Witness(config, state)),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    with listener:
        server.run(sockets=[listener])


@witness.command("key")
@_name_option
@_key_file_option
def key(name: str, key_file: Path) -> None:
    """Print the witness's verifier key NAME+ID+base64(0x04||KEY), creating the key file if
    missing: what a log or an auditor configures to check its cosignatures."""
    click.echo(_signer(name, key_file).verifier.encode())


@witness.command("show")
@_state_option
@click.option(
    "--refused",
    is_flag=True,
    help="Instead, the checkpoints refused though validly signed (forks, rollbacks)",
)
def show(state_file: Path, refused: bool) -> None:
    """What the witness holds: per log origin, one JSON line with the latest cosigned size,
    root and when it was cosigned."""
    try:
        state = WitnessState(state_file, read_only=True)
    except ProvError as error:
        raise Failed(f"--state: {error}") from None
    if refused:
        for kept in state.refused():
            emit(
                {
                    "origin": kept.origin,
                    "old_size": kept.old_size,
                    "size": kept.size,
                    "root": base64.b64encode(kept.root_hash).decode(),
                    "status": kept.status,
                    "reason": kept.reason,
                    "first_seen": _time(kept.first_seen),
                    "last_seen": _time(kept.last_seen),
                    "times": kept.times,
                    "note": kept.note,
                }
            )
        return
    counts: dict[str, int] = {}
    for kept in state.refused():
        counts[kept.origin] = counts.get(kept.origin, 0) + 1
    for latest in state.all_latest():
        emit(
            {
                "origin": latest.origin,
                "size": latest.size,
                "root": base64.b64encode(latest.root_hash).decode(),
                "cosigned_at": _time(latest.cosigned_at),
                "refused": counts.get(latest.origin, 0),
            }
        )


COMMANDS = (witness,)
