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

from ledger.errors import ProvError
from service.ledger_setup import open_ledger
from service.settings import Settings

__all__ = ["open_ledger"]

F = TypeVar("F", bound=Callable[..., Any])
_json = msgspec.json.Encoder()


class Failed(click.ClickException):
    """A one-line failure; the exit status is 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"prov: {self.message}", err=True)


class BadSettings(Failed):
    exit_code = 2


class BadInput(Failed):
    """A one-line failure of input the command refused before doing anything."""

    exit_code = 2


# Kinds that say the command's input was wrong before anything was done: exit status 2, as
# for a usage error. Every other purposeful error exits 1.
USAGE_KINDS = frozenset({"bad-registry", "bad-replay-plan", "bad-policy", "bad-selector"})


def failure_for(error: ProvError) -> Failed:
    """The one place a purposeful error becomes the CLI's one line: ``prov: KIND: DETAIL``
    (an SDK `ProblemError` already ends with its ``[kind]``, so it is not repeated)."""
    text = " ".join(str(error).split())  # one line, whatever the detail holds
    if not text.endswith(f"[{error.kind}]"):
        text = f"{error.kind}: {text}"
    return BadInput(text) if error.kind in USAGE_KINDS else Failed(text)


def settings_from_env() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:
        raise BadSettings(str(error)) from None


# Where the group's `--db` and `--key-file` wait for the subcommand (ctx.meta is shared by
# every context of one invocation).
_GLOBAL_LEDGER = "prov.ledger_options"

_db_option = click.option(
    "--db", "db_url", metavar="URL", help="Database URL or SQLite path [PROV_DATABASE_URL]"
)
_key_file_option = click.option(
    "--key-file",
    metavar="PATH",
    type=click.Path(path_type=Path),
    help="Ledger key [PROV_LEDGER_KEY_FILE]",
)


def global_ledger_options(group: F) -> F:
    """`--db` and `--key-file` before the subcommand (`prov --db URL init`)."""

    @_db_option
    @_key_file_option
    @functools.wraps(group)
    def wrapper(db_url: str | None, key_file: Path | None, **kwargs: Any) -> Any:
        click.get_current_context().meta[_GLOBAL_LEDGER] = (db_url, key_file)
        return group(**kwargs)

    return wrapper  # type: ignore[return-value]


def ledger_options(command: F) -> F:
    """`--db` and `--key-file` after a subcommand that opens the ledger; they win over the
    same options before it, which win over the environment."""

    @_db_option
    @_key_file_option
    @functools.wraps(command)
    def wrapper(db_url: str | None, key_file: Path | None, **kwargs: Any) -> Any:
        global_db, global_key_file = click.get_current_context().meta.get(
            _GLOBAL_LEDGER, (None, None)
        )
        settings = settings_from_env()
        kwargs["settings"] = msgspec.structs.replace(
            settings,
            database_url=db_url or global_db or settings.database_url,
            ledger_key_file=key_file or global_key_file or settings.ledger_key_file,
        )
        return command(**kwargs)

    return wrapper  # type: ignore[return-value]


def emit(value: object) -> None:
    sys.stdout.buffer.write(_json.encode(value) + b"\n")


def report_differing(
    missing: dict[str, list[tuple[Any, ...]]], unexpected: dict[str, list[tuple[Any, ...]]]
) -> None:
    """`prov reindex`: on stderr, up to 20 rows per table that a rebuilt index lacked
    (`missing`) or held without the log giving them (`unexpected`)."""
    for label, found in (("missing from", missing), ("not given by the log, in", unexpected)):
        for table, rows in found.items():
            for row in rows[:20]:
                click.echo(f"row {label} {table}: {row}", err=True)
