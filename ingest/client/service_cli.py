"""The command line of a service built on the SDK: ``register`` its key once, then ``run``.

`service_parser` is the parser such a service starts from: the command (``register``, or
``run`` by default) and the options that connect it to the ledger, each defaulting to an
environment variable (docs/configuration.md):

- ``--url`` (``PROV_URL``, default ``http://127.0.0.1:8080``): the ledger;
- ``--api-key`` (``PROV_API_KEY``): the ``ingest`` key ``run`` appends with;
- ``--admin-key`` (``PROV_ADMIN_KEY``): the ``admin`` key ``register`` needs;
- ``--key-file`` (``PROV_SERVICE_KEY_FILE``): the service's signing key, PKCS#8 PEM;
- ``--verifier-key`` (``PROV_VERIFIER_KEY``): the ledger's verifier key, fetched from the
  server (trusted on first use) when omitted.

The service adds its own options and its ``run``. `register_command` is ``register``;
`service_client` is how ``run`` starts: the `Client` the options describe, or None, with
the reason on stderr, when one it needs is missing. The examples (examples/README.md) are
built on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ingest.client.errors import ClientError
from ingest.client.service_key import load_or_create_key, register_key
from ingest.client.sync import Client
from ledger.keys.signing import load_signing_key

# Exit statuses: done, failed, and the command line was not enough to start.
OK, FAILED, USAGE = 0, 1, 2


def service_parser(doc: str | None, *, key_file: str) -> argparse.ArgumentParser:
    """A parser for a service's command line, described by the first paragraph of `doc`
    (its module's docstring); `key_file` is where its signing key is kept by default."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("command", choices=["register", "run"], nargs="?", default="run")
    parser.add_argument("--url", default=os.environ.get("PROV_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("PROV_API_KEY"), help="ingest key")
    parser.add_argument("--admin-key", default=os.environ.get("PROV_ADMIN_KEY"))
    parser.add_argument(
        "--key-file",
        type=Path,
        default=Path(os.environ.get("PROV_SERVICE_KEY_FILE", key_file)),
        help="the service's Ed25519 key, PKCS#8 PEM",
    )
    parser.add_argument(
        "--verifier-key",
        default=os.environ.get("PROV_VERIFIER_KEY"),
        help="the ledger's verifier key (prov checkpoint --verifier-key); "
        "fetched from the server when omitted",
    )
    return parser


def register_command(args: argparse.Namespace, service: str) -> int:
    """``register``: create the service key if needed and register it for `service` with
    ``POST /v1/keys``; prints the registered key. The exit status."""
    if not args.admin_key:
        print("an admin API key is needed: --admin-key or PROV_ADMIN_KEY", file=sys.stderr)
        return USAGE
    key, created = load_or_create_key(args.key_file)
    if created:
        print(f"created service key {args.key_file}", file=sys.stderr)
    try:
        registered = register_key(args.url, args.admin_key, service, key)
    except ClientError as error:
        print(f"service key {args.key_file} not registered: {error}", file=sys.stderr)
        return FAILED
    print(json.dumps(registered))
    return OK


def service_client(args: argparse.Namespace, *, tenant: str, service: str) -> Client | None:
    """The `Client` that appends for `tenant` and `service` as the options say, or None
    (the reason printed on stderr) without an API key or a service key file."""
    if not args.api_key:
        print("an ingest API key is needed: --api-key or PROV_API_KEY", file=sys.stderr)
        return None
    if not args.key_file.exists():
        print(f"no service key at {args.key_file}: run `register` first", file=sys.stderr)
        return None
    return Client(
        args.url,
        args.api_key,
        load_signing_key(args.key_file),
        tenant=tenant,
        service=service,
        verifier_key=args.verifier_key or None,
    )
