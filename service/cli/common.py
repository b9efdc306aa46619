"""What every `prov` subcommand shares: the one-line failure, the ledger options, opening
the ledger and writing JSON lines."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import msgspec

from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from service.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
_json = msgspec.json.Encoder()


class Failed(click.ClickException):
    """A one-line failure; the exit status is 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"prov: {self.message}", err=True)


class BadSettings(Failed):
    exit_code = 2


def settings_from_env() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:
        raise BadSettings(str(error)) from None


def ledger_options(command: F) -> F:
    """`--db` and `--key-file` on every subcommand, defaulting to the environment."""

    @click.option(
        "--db", "db_url", metavar="URL", help="Database URL or SQLite path [PROV_DATABASE_URL]"
    )
    @click.option(
        "--key-file", type=click.Path(path_type=Path), help="Ledger key [PROV_LEDGER_KEY_FILE]"
    )
    @functools.wraps(command)
    def wrapper(db_url: str | None, key_file: Path | None, **kwargs: Any) -> Any:
        settings = settings_from_env()
        kwargs["settings"] = msgspec.structs.replace(
            settings,
            database_url=db_url or settings.database_url,
            ledger_key_file=key_file or settings.ledger_key_file,
        )
        return command(**kwargs)

    return wrapper  # type: ignore[return-value]


def open_ledger(settings: Settings) -> Ledger:
    return Ledger.open(
        make_engine(settings.database_url),
        settings.ledger_key_file,
        replay_key_path=settings.replay_key_file,
        max_record_bytes=settings.max_record_bytes,
    )


def emit(value: object) -> None:
    sys.stdout.buffer.write(_json.encode(value) + b"\n")
