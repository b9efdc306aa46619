"""`prov collector`: an OTLP/HTTP receiver beside one service, holding that service's key,
that turns the service's spans into producer-signed decisions and sends them to a served
ledger (docs/collector.md; the work is in `service.collector`)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ledger.errors import ProvError
from ledger.keys.signing import SigningKey, derive_keyid, load_signing_key
from ledger.log.note import NoteVerifier
from service.cli.common import BadInput, Failed

LOG_LEVELS = ("debug", "info", "warning", "error")


def _api_key(api_key: str | None, api_key_file: Path | None) -> str:
    if api_key and api_key_file:
        raise BadInput("give --api-key or --api-key-file, not both")
    if api_key_file is None:
        return api_key or ""
    try:
        return api_key_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"--api-key-file {api_key_file}: {error}") from None


def _signing_key(path: Path) -> SigningKey:
    try:
        return load_signing_key(path)
    except OSError as error:
        raise BadInput(f"--key {path}: {error.strerror or error}") from None
    except (ValueError, TypeError) as error:
        # TypeError: an encrypted PEM, which needs a password the collector does not take.
        raise BadInput(f"--key {path} is not an unencrypted Ed25519 PEM key: {error}") from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The SDK's HTTP client logs every request at INFO: one line per batch sent.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def _verifier(text: str | None) -> None:
    if text is None:
        return
    try:
        NoteVerifier.parse(text)
    except (ProvError, ValueError) as error:
        raise BadInput(f"--verifier-key: {error}") from None


@click.command("collector")
@click.option(
    "--ledger-url",
    envvar="PROV_COLLECTOR_LEDGER_URL",
    required=True,
    metavar="URL",
    help="The served ledger, e.g. http://prov:8080 [PROV_COLLECTOR_LEDGER_URL]",
)
@click.option("--api-key", envvar="PROV_API_KEY", help="An ingest API key [PROV_API_KEY]")
@click.option(
    "--api-key-file",
    envvar="PROV_COLLECTOR_API_KEY_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file holding the API key instead (a mounted Secret) [PROV_COLLECTOR_API_KEY_FILE]",
)
@click.option(
    "--tenant", envvar="PROV_COLLECTOR_TENANT", required=True, help="[PROV_COLLECTOR_TENANT]"
)
@click.option(
    "--service",
    envvar="PROV_COLLECTOR_SERVICE",
    required=True,
    help="The service the key is registered for; every decision names it [PROV_COLLECTOR_SERVICE]",
)
@click.option(
    "--key",
    "key_file",
    envvar="PROV_COLLECTOR_KEY_FILE",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The service's Ed25519 private key, PKCS#8 PEM [PROV_COLLECTOR_KEY_FILE]",
)
@click.option(
    "--keyid",
    envvar="PROV_COLLECTOR_KEYID",
    help="The key's DSSE keyid, if registered under its own (default: derived from the key) "
    "[PROV_COLLECTOR_KEYID]",
)
@click.option(
    "--verifier-key",
    envvar="PROV_COLLECTOR_VERIFIER_KEY",
    help="The ledger's note verifier key receipts must verify under (default: fetched "
    "from the ledger once) [PROV_COLLECTOR_VERIFIER_KEY]",
)
@click.option(
    "--host",
    envvar="PROV_COLLECTOR_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; one other hosts can reach needs --listen-token "
    "[PROV_COLLECTOR_HOST]",
)
@click.option(
    "--port",
    envvar="PROV_COLLECTOR_PORT",
    type=click.IntRange(0, 65535),
    default=4318,
    show_default=True,
    help="[PROV_COLLECTOR_PORT]",
)
@click.option(
    "--data",
    envvar="PROV_COLLECTOR_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("prov-collector"),
    show_default=True,
    help="Directory of the span store; one collector per directory [PROV_COLLECTOR_DATA]",
)
@click.option(
    "--listen-token",
    envvar="PROV_COLLECTOR_LISTEN_TOKEN",
    help="Require exports to carry 'Authorization: Bearer TOKEN' [PROV_COLLECTOR_LISTEN_TOKEN]",
)
@click.option(
    "--settle-seconds",
    envvar="PROV_COLLECTOR_SETTLE_SECONDS",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Quiet time after a trace's root span before it is assembled "
    "[PROV_COLLECTOR_SETTLE_SECONDS]",
)
@click.option(
    "--grace-seconds",
    envvar="PROV_COLLECTOR_GRACE_SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="A trace whose root never arrives is closed, incomplete, after this "
    "[PROV_COLLECTOR_GRACE_SECONDS]",
)
@click.option(
    "--claim-seconds",
    envvar="PROV_COLLECTOR_CLAIM_SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="How soon traces whose sending failed outright are tried again "
    "[PROV_COLLECTOR_CLAIM_SECONDS]",
)
@click.option(
    "--log-level",
    envvar="PROV_COLLECTOR_LOG_LEVEL",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="[PROV_COLLECTOR_LOG_LEVEL]",
)
def collector(
    *,
    ledger_url: str,
    api_key: str | None,
    api_key_file: Path | None,
    tenant: str,
    service: str,
    key_file: Path,
    keyid: str | None,
    verifier_key: str | None,
    host: str,
    port: int,
    data: Path,
    listen_token: str | None,
    settle_seconds: float,
    grace_seconds: float,
    claim_seconds: float,
    log_level: str,
) -> None:
    """Receive a service's OTLP/HTTP spans, keep them on disk, assemble each finished trace
    into decisions, sign them with the service's key and send them to the ledger
    (producer-signed); runs in the foreground until interrupted."""
    from service.collector.config import CollectorConfig, CollectorConfigError  # noqa: PLC0415
    from service.collector.run import ListenError, run  # noqa: PLC0415 - the server stack
    from service.collector.spool import SpoolError  # noqa: PLC0415

    try:
        config = CollectorConfig(
            ledger_url=ledger_url,
            api_key=_api_key(api_key, api_key_file),
            tenant=tenant,
            service=service,
            key_file=key_file,
            data=data,
            keyid=keyid,
            verifier_key=verifier_key,
            host=host,
            port=port,
            listen_token=listen_token,
            settle_s=settle_seconds,
            grace_s=grace_seconds,
            claim_s=claim_seconds,
        )
    except CollectorConfigError as error:
        raise BadInput(str(error)) from None
    _verifier(verifier_key)
    key = _signing_key(key_file)
    _configure_logging(log_level)
    click.echo(f"service key: keyid {keyid or derive_keyid(key.public_key)}")
    try:
        run(config, key, log_level=log_level, announce=click.echo)
    except (SpoolError, ListenError) as error:
        raise Failed(str(error)) from None


COMMANDS = (collector,)
