"""`prov models serve`: the demo models over the OpenAI and Anthropic wire formats.

No model provider needs to be reachable to replay the demo data: this serves
`service.demo.models` (the snapshots the demo records name, and newer ones) in the
foreground, at the base URLs that examples/replay-registry.toml routes to.
"""

from __future__ import annotations

import os
import socket

import click

from service.cli.common import Failed


@click.group("models")
def models() -> None:
    """Local stand-ins for model providers."""


@models.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True)
def serve(host: str, port: int) -> None:
    """Serve the demo models in the foreground until interrupted; any API key is accepted."""
    import uvicorn  # noqa: PLC0415 - the server stack loads only here

    from service.demo.models import SNAPSHOTS, demo_app  # noqa: PLC0415

    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.create_server(address, family=family)
    except socket.gaierror as error:
        raise Failed(f"cannot listen on {host}: {error.strerror}") from None
    except OSError as error:
        # Not `strerror`: `create_server` appends the address to it.
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise Failed(f"cannot listen on {host}:{port}: {reason}") from None
    bound = listener.getsockname()[1]
    where = f"[{host}]" if family == socket.AF_INET6 else host
    click.echo(f"OpenAI chat completions: http://{where}:{bound}/v1")
    click.echo(f"Anthropic Messages:      http://{where}:{bound}")
    click.echo("Models:")
    for snapshot in SNAPSHOTS:
        role = "newer, decides some demo records differently" if snapshot.newer else "as recorded"
        click.echo(f"  {snapshot.name} (alias {snapshot.alias}): {role}")
    click.echo("Press Ctrl+C to stop.")
    config = uvicorn.Config(
        demo_app(),
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    with listener:
        uvicorn.Server(config).run(sockets=[listener])


COMMANDS = (models,)
