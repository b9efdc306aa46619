"""Blob upload and read through S3 at 1 MiB, beside the S3 client's own put and get of the
same bytes in the same run (target: within 1.5x).

Against a SeaweedFS on loopback that it starts itself (the dev extra's `weed`):
  (a) raw client: obstore's own put, then get, of 1 MiB of random bytes;
  (b) store: the same bytes sealed (AES-256-GCM under a random data key) and put through
      `S3Store`, then got and unsealed: what the blob vault does around the client;
  (c) HTTP: `PUT /v1/blobs/{digest}` then `GET` of the same size through `prov serve` with
      `PROV_BLOB_STORE=s3://…`: digest check, spooling, index row, sealing, S3 and back.
Each round uses fresh bytes, so no put is an idempotent no-op. Medians of a put+get pair.

    python -m bench.blob_s3 [--size-mib 1] [--rounds 40] [--engine sqlite|postgres]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import obstore
from obstore.store import S3Store as ObstoreS3

from bench.common import ENGINES
from bench.ingest_http import running_server
from ledger.blobs.sealing import KEY_BYTES, OVERHEAD, associated_data, seal, unseal
from ledger.blobs.stores.s3 import S3Store
from tests.s3_server import BUCKET, SeaweedFS, start_seaweedfs

TARGET_RATIO = 1.5


def median_ms(rounds: int, one_round: Callable[[bytes], None], size: int) -> float:
    """The median time of `one_round` over fresh random bytes, after one warm-up round."""
    one_round(os.urandom(size))
    samples = []
    for _ in range(rounds):
        data = os.urandom(size)
        started = time.perf_counter()
        one_round(data)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def raw_client(seaweedfs: SeaweedFS, prefix: str) -> Callable[[bytes], None]:
    options = seaweedfs.options()
    client = ObstoreS3(
        BUCKET,
        prefix=prefix,
        endpoint=options.endpoint,
        region=options.region,
        access_key_id=options.access_key_id,
        secret_access_key=options.secret_access_key,
        client_options={"allow_http": True},
    )

    def put_get(data: bytes) -> None:
        key = f"acme/{uuid.uuid4().hex}"
        obstore.put(client, key, data)
        if bytes(obstore.get(client, key).bytes()) != data:
            raise AssertionError("the raw client read back other bytes")

    return put_get


def through_store(seaweedfs: SeaweedFS, prefix: str) -> Callable[[bytes], None]:
    store = S3Store(f"s3://{BUCKET}/{prefix}", seaweedfs.options())
    key = secrets.token_bytes(KEY_BYTES)

    def put_get(data: bytes) -> None:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        aad = associated_data("acme", digest)
        name = f"acme/{digest.removeprefix('sha256:')}.{uuid.uuid4().hex}"
        store.put(name, seal(key, [data], aad), len(data) + OVERHEAD)
        sealed = store.get(name)
        if sealed is None or unseal(key, sealed, aad) != data:
            raise AssertionError("the store read back other bytes")

    return put_get


def through_http(url: str, key: str, client: httpx.Client) -> Callable[[bytes], None]:
    headers = {"Authorization": f"Bearer {key}"}

    def put_get(data: bytes) -> None:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        stored = client.put(
            f"{url}/v1/blobs/{digest}",
            content=data,
            headers=headers | {"Content-Type": "application/octet-stream"},
        )
        if stored.status_code != 201:
            raise AssertionError(f"upload answered {stored.status_code}: {stored.text[:300]}")
        read = client.get(f"{url}/v1/blobs/{digest}", headers=headers)
        if read.status_code != 200 or read.content != data:
            raise AssertionError(f"download answered {read.status_code}")

    return put_get


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--engine", choices=ENGINES, default="sqlite", help="for (c)")
    args = parser.parse_args()
    size = int(args.size_mib * (1 << 20))
    with tempfile.TemporaryDirectory(prefix="prov-bench-s3-") as folder:
        seaweedfs = start_seaweedfs(Path(folder))
        try:
            raw_ms = median_ms(args.rounds, raw_client(seaweedfs, "raw"), size)
            store_ms = median_ms(args.rounds, through_store(seaweedfs, "store"), size)
            settings = {"PROV_BLOB_STORE": f"s3://{BUCKET}/http", **seaweedfs.env()}
            with running_server(args.engine, 1, settings) as server, httpx.Client() as client:
                http_ms = median_ms(
                    args.rounds, through_http(server.url, server.admin_key, client), size
                )
        finally:
            seaweedfs.stop()
    mib = size / (1 << 20)
    print(f"\nS3 (SeaweedFS on loopback), {mib:g} MiB, put then get, median of {args.rounds}")
    print(f"  {'(a) raw client (obstore)':<36} {raw_ms:8.2f} ms")
    for label, figure in (
        ("(b) S3Store, sealed and unsealed", store_ms),
        (f"(c) HTTP via prov serve [{args.engine}]", http_ms),
    ):
        ratio = figure / raw_ms
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER"
        print(f"  {label:<36} {figure:8.2f} ms  {ratio:5.2f}x raw  [{TARGET_RATIO}x: {verdict}]")


if __name__ == "__main__":
    main()
