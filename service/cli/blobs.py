"""`prov blob put` and `prov blob get`: a tenant's blobs from the command line.

- `prov blob put FILE --tenant T [--subject S] [--plain]`: store the file's bytes as a blob
  (salted unless `--plain`, sealed under S's data key) and print its digest, the reference a
  record carries.
- `prov blob get DIGEST --tenant T [--content]`: the blob's bytes on stdout (`--content`:
  without the salt); an erased blob, or one whose subject's key was destroyed, is a
  one-line error, as is a blob whose stored bytes do not open.
"""

from __future__ import annotations

import sys
from typing import IO

import click

from ledger.blobs.digest import digest_of
from ledger.blobs.salted import content_of, salted
from ledger.log.sequencer import now_micros
from service.cli.common import emit, ledger_options, open_ledger
from service.settings import Settings


@click.group("blob")
def blob() -> None:
    """A tenant's blobs: store content by digest, or read it back."""


@blob.command("put")
@click.argument("source", type=click.File("rb"))
@click.option("--tenant", required=True)
@click.option("--subject", help="Who the content is about: erasing them erases it")
@click.option("--plain", is_flag=True, help="Store as is, unsalted (content that is not personal)")
@ledger_options
def put(
    settings: Settings, source: IO[bytes], tenant: str, subject: str | None, plain: bool
) -> None:
    """Store SOURCE's bytes ("-": stdin) as a blob and print its digest."""
    content = source.read()
    data = content if plain else salted(content)
    digest = digest_of(data)
    stored = open_ledger(settings).blobs.put(
        tenant, digest, data, subject=subject, now_us=now_micros()
    )
    emit({"digest": digest, "size": stored.size, "created": stored.created})


@blob.command("get")
@click.argument("digest")
@click.option("--tenant", required=True)
@click.option("--content", "content_only", is_flag=True, help="Without the salt")
@ledger_options
def get(settings: Settings, digest: str, tenant: str, content_only: bool) -> None:
    """Write the blob DIGEST's bytes to stdout."""
    data = open_ledger(settings).blobs.get(tenant, digest)
    sys.stdout.buffer.write(content_of(data) if content_only else data)


COMMANDS = (blob,)
