"""Running the collector in the foreground: its data directory locked and opened, its port
bound (so a port in use is a one-line error before anything else starts), then uvicorn
until SIGINT or SIGTERM, which stop the assembler and close the SDK client."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import uvicorn

from ledger.errors import ProvError
from ledger.keys.signing import SigningKey
from service.collector.app import collector_app
from service.collector.config import CollectorConfig
from service.collector.spool import open_spool


class ListenError(ProvError):
    """The collector cannot listen where it was told to."""

    kind = "cannot-listen"
    title = "Cannot listen on the address"


def bind(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address, family=family)
    except socket.gaierror as error:
        raise ListenError(f"cannot listen on {host}: {error.strerror}") from None
    except OSError as error:
        # Not `strerror` alone: `create_server` appends the address to it.
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None


def run(
    config: CollectorConfig,
    key: SigningKey,
    *,
    log_level: str = "info",
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until stopped. `announce` is told, once bound, where exports go."""
    spool = open_spool(config.data)
    try:
        listener = bind(config.host, config.port)
        with listener:
            host, port = listener.getsockname()[:2]
            where = f"[{host}]" if listener.family == socket.AF_INET6 else host
            if spool.released:
                announce(f"{spool.released} traces a stopped collector had claimed are open again")
            announce(f"OTLP/HTTP: http://{where}:{port}/v1/traces and /v1/logs")
            announce(
                f"signing for {config.tenant}/{config.service}, sending to {config.ledger_url}"
            )
            server = uvicorn.Server(
                uvicorn.Config(
                    collector_app(config, spool.engine, key),
                    lifespan="on",
                    log_level=log_level,
                    access_log=False,
                    timeout_graceful_shutdown=10,
                )
            )
            server.run(sockets=[listener])
    finally:
        spool.close()
