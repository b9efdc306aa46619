"""HTTP ingest through a real `prov serve` process, beside the two ceilings from the same run:
a bare signature-verification loop (1 and 2 threads) and a raw INSERT of the same rows.

Two loads, each against a fresh server over a fresh database:
- batch: `POST /v1/records/batch` bodies of 1,000 envelopes (JSON arrays) from a few
  concurrent senders, end to end. Target: 15,000 records/s.
- single: one envelope per `POST /v1/records` from 64 keep-alive clients, each sending its
  next record as soon as the previous one is answered. Target: 3,000 records/s, p99 <= 50 ms.

Each run checks every answer, that the log's size equals the records sent, and that the
server stops cleanly. The load generator is a minimal HTTP/1.1 client on the event loop
with pre-built request bytes, so that it takes as little as possible of the CPU it shares
with the server. CPU per record is read from /proc: the server's processes, this process
(the client), and the rest of the machine (the database server, and any other load).

    python -m bench.ingest_http [--engine sqlite|postgres] [--workers 1 --workers 2]
        [--repeat 2] [--records 50000] [--single-records 20000] [--clients 64]
        [--senders 4] [--set PROV_NAME=VALUE] [--profile DIR]
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx
import msgspec
import uvloop

from bench.baselines import raw_insert_baseline, verify_loop_baseline
from bench.common import (
    DEMO_TENANT,
    ENGINES,
    demo_records,
    engine_arguments,
    fresh_database,
    fresh_ledger,
)
from ledger.storage.db import make_engine
from service.demo.traffic import register_demo_keys

PROV = str(Path(sys.executable).with_name("prov"))
HOST = "127.0.0.1"
BATCH_TARGET = 15_000
SINGLE_TARGET = 3_000
SINGLE_P99_TARGET_MS = 50.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the server -------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    port: int
    admin_key: str
    ingest_key: str
    process: subprocess.Popen[bytes]
    db_url: str
    key_file: Path
    pids: list[int] = field(default_factory=list)

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def prov(*arguments: str, db_url: str, key_file: Path) -> str:
    done = subprocess.run(
        [PROV, *arguments, "--db", db_url, "--key-file", str(key_file)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"prov {' '.join(arguments)} failed: {done.stderr.decode()}")
    return done.stdout.decode()


@contextlib.contextmanager
def running_server(
    engine_name: str, workers: int, settings: dict[str, str], ledger_key: Path | None = None
) -> Iterator[Server]:
    """`prov serve` over a fresh database with an admin key, an ingest key and the demo
    service keys; stopped with SIGTERM afterwards, and required to exit cleanly. Given
    `ledger_key`, the ledger signs with a copy of it (so a witness can follow it)."""
    with (
        fresh_database(engine_name) as db_url,
        tempfile.TemporaryDirectory(prefix="prov-bench-http-") as folder,
    ):
        key_file = Path(folder) / "ledger.key"
        if ledger_key is not None:
            shutil.copyfile(ledger_key, key_file)
        prov("init", db_url=db_url, key_file=key_file)
        create = ("api-key", "create", "--tenant", DEMO_TENANT, "--role", "admin")
        made = prov(*create, db_url=db_url, key_file=key_file)
        admin_key = str(json.loads(made.splitlines()[0])["key"])
        engine = make_engine(db_url)
        register_demo_keys(engine, DEMO_TENANT)
        engine.dispose()
        port = free_port()
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("PROV_") and name != "PROMETHEUS_MULTIPROC_DIR"
        }
        env |= {
            "PROV_DATABASE_URL": db_url,
            "PROV_LEDGER_KEY_FILE": str(key_file),
            "PROV_HOST": HOST,
            "PROV_PORT": str(port),
            "PROV_WORKERS": str(workers),
            "PROV_LOG_LEVEL": "warning",
        } | settings
        if workers > 1:  # the workers' metrics, counted afresh and removed with the server
            env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(folder) / "metrics")
            Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir()
        log_path = Path(folder) / "server.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [PROV, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            url = f"http://{HOST}:{port}"
            _wait_ready(url, process, log_path, workers)
            ingest = httpx.post(
                f"{url}/v1/api-keys",
                json={"role": "ingest", "name": "bench"},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            ingest.raise_for_status()
            server = Server(
                url, port, admin_key, str(ingest.json()["key"]), process, db_url, key_file
            )
            server.pids = process_tree(process.pid)
            yield server
        finally:
            process.terminate()
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code not in (0, -signal.SIGTERM):
                raise RuntimeError(f"prov serve exited with {code}: {log_path.read_text()[-2000:]}")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, workers: int) -> None:
    """Until /readyz answers and, with several workers, every worker process is up."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prov serve exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            if ready and (workers == 1 or _spawned_workers(process.pid) >= workers):
                # Let late workers finish starting before anything is timed.
                time.sleep(1.0 if workers > 1 else 0.2)
                return
        time.sleep(0.05)
    raise RuntimeError(f"prov serve did not get ready: {log.read_text()[-2000:]}")


def _spawned_workers(root: int) -> int:
    """How many worker processes the server has started so far."""
    count = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            count += b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return count


# --- CPU accounting from /proc ----------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree = [root]
    for pid in tree:
        tree.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds that all cores together have spent not idle, since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass
class CpuSnapshot:
    server: list[float]
    client: float
    machine: float

    @classmethod
    def take(cls, pids: list[int]) -> CpuSnapshot:
        return cls([process_cpu(pid) for pid in pids], time.process_time(), machine_busy())


# --- the load generator -----------------------------------------------------------------


class Load:
    """Pre-built requests, handed to each connection as its previous answer arrives."""

    def __init__(self, requests: list[bytes], keep_bodies: bool) -> None:
        self.requests = requests
        self.keep_bodies = keep_bodies
        self.next = 0
        self.answered = 0
        self.sent_at = [0.0] * len(requests)
        self.latency = [0.0] * len(requests)
        self.status = [0] * len(requests)
        self.bodies: list[bytes] = [b""] * len(requests) if keep_bodies else []
        self.started = 0.0
        self.finished = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def take(self) -> int | None:
        if self.next >= len(self.requests):
            return None
        self.next += 1
        return self.next - 1

    def answer(self, index: int, status: int, body: bytes, at: float) -> None:
        self.latency[index] = at - self.sent_at[index]
        self.status[index] = status
        if self.keep_bodies:
            self.bodies[index] = body
        self.answered += 1
        if self.answered == len(self.requests):
            self.finished = at
            if not self.done.done():
                self.done.set_result(None)

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request outstanding. Responses
    are read as a status line, headers and a Content-Length body."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.status = 0
        self.length = -1
        self.current = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send_next(self) -> None:
        index = self.load.take()
        if index is None:
            return
        if self.transport is None:
            self.load.fail(ConnectionError("not connected"))
            return
        self.current = index
        self.load.sent_at[index] = time.perf_counter()
        self.transport.write(self.load.requests[index])

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            if self.length < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end]).lower()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    self.load.fail(RuntimeError(f"no Content-Length: {head[:200]!r}"))
                    return
                stop = head.find(b"\r\n", at + 2)
                self.length = int(head[at + 17 : stop if stop >= 0 else len(head)])
                del buffer[: end + 4]
            if len(buffer) < self.length:
                return
            body = bytes(buffer[: self.length])
            del buffer[: self.length]
            self.length = -1
            self.load.answer(self.current, self.status, body, time.perf_counter())
            self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.load.answered < len(self.load.requests):
            self.load.fail(exc or ConnectionError("the server closed a connection"))


def request_bytes(path: str, port: int, key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _drive(port: int, requests: list[bytes], connections: int, keep_bodies: bool) -> Load:
    loop = asyncio.get_running_loop()
    load = Load(requests, keep_bodies)
    opened = [
        (await loop.create_connection(lambda: Connection(load), HOST, port))[1]
        for _ in range(min(connections, len(requests)))
    ]
    load.started = time.perf_counter()
    for connection in opened:
        connection.send_next()
    await load.done
    for connection in opened:
        if connection.transport is not None:
            connection.transport.close()
    return load


def drive(port: int, requests: list[bytes], connections: int, *, keep_bodies: bool) -> Load:
    """Send every request over `connections` keep-alive connections; the answers, timed."""
    gc.collect()
    gc.disable()
    try:
        return uvloop.run(_drive(port, requests, connections, keep_bodies))
    finally:
        gc.enable()


# --- one measured run -------------------------------------------------------------------


class _Item(msgspec.Struct):
    status: int


class _BatchAnswer(msgspec.Struct):
    created: int
    existing: int
    rejected: int
    results: list[_Item]


_BATCH_ANSWER = msgspec.json.Decoder(_BatchAnswer)


@dataclass
class Run:
    mode: str
    workers: int
    records: int
    seconds: float
    latencies_ms: list[float]  # sorted, one per request
    server_cpu: list[float]  # seconds, per server process
    client_cpu: float
    machine_cpu: float
    commits: float
    committed: float
    commit_seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    def percentile(self, share: float) -> float:
        return self.latencies_ms[
            min(len(self.latencies_ms) - 1, int(share * len(self.latencies_ms)))
        ]

    def per_record_us(self, seconds: float) -> float:
        return seconds / self.records * 1e6

    @property
    def other_cpu(self) -> float:
        """CPU taken by neither the server nor the load generator: the database server,
        and whatever else runs on the machine."""
        return self.machine_cpu - sum(self.server_cpu) - self.client_cpu


@dataclass
class Options:
    records: int
    single_records: int
    batch: int
    senders: int
    clients: int
    server_settings: dict[str, str]
    profile: Path | None
    ledger_key: Path | None = None


def measure(
    engine_name: str,
    mode: str,
    workers: int,
    records: list[bytes],
    options: Options,
) -> Run:
    with running_server(
        engine_name, workers, options.server_settings, options.ledger_key
    ) as server:
        if mode == "batch":
            path, connections = "/v1/records/batch", options.senders
            size = options.batch
            chunks = [records[start : start + size] for start in range(0, len(records), size)]
            bodies = [b"[" + b",".join(chunk) + b"]" for chunk in chunks]
            sizes = [len(chunk) for chunk in chunks]
        else:
            path, connections, bodies = "/v1/records", options.clients, records
            sizes = [1] * len(records)
        requests = [request_bytes(path, server.port, server.ingest_key, body) for body in bodies]
        label = f"{engine_name}-{mode}-workers{workers}-{time.strftime('%H%M%S')}"
        with profiled(server.pids, options.profile, label):
            before = CpuSnapshot.take(server.pids)
            load = drive(server.port, requests, connections, keep_bodies=mode == "batch")
            after = CpuSnapshot.take(server.pids)
        _check(mode, load, sizes)
        log = httpx.get(f"{server.url}/v1/log", headers=server.auth(server.admin_key)).json()
        if log["tree_size"] != len(records):
            raise AssertionError(f"log size {log['tree_size']}, sent {len(records)}")
        metrics = httpx.get(f"{server.url}/metrics").text
    return Run(
        mode=mode,
        workers=workers,
        records=len(records),
        seconds=load.finished - load.started,
        latencies_ms=sorted(latency * 1000 for latency in load.latency),
        server_cpu=[end - start for start, end in zip(before.server, after.server, strict=True)],
        client_cpu=after.client - before.client,
        machine_cpu=after.machine - before.machine,
        commits=_metric(metrics, "prov_commit_batch_records_count"),
        committed=_metric(metrics, "prov_commit_batch_records_sum"),
        commit_seconds=_metric(metrics, "prov_commit_seconds_sum"),
    )


@contextlib.contextmanager
def profiled(pids: list[int], folder: Path | None, label: str) -> Iterator[None]:
    """py-spy on each server process while the load runs, as collapsed stacks per thread.
    Its sampling takes CPU too, so figures from a profiled run are not comparable."""
    if folder is None:
        yield
        return
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    spy = shutil.which("py-spy", path=search)
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    options = ["--format", "raw", "--threads", "--nonblocking", "--rate", "100"]
    samplers = [
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), *options, "-o", str(folder / f"{label}-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    time.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        for sampler in samplers:
            sampler.send_signal(signal.SIGINT)
        for sampler in samplers:
            sampler.wait(timeout=60)


def _check(mode: str, load: Load, sizes: list[int]) -> None:
    """Every record answered 201: directly, or as an item of its batch's 200 answer."""
    if mode != "batch":
        refused = [status for status in load.status if status != 201]
        if refused:
            raise AssertionError(f"{len(refused)} records not answered 201: {set(refused)}")
        return
    for position, (status, body, size) in enumerate(
        zip(load.status, load.bodies, sizes, strict=True)
    ):
        answer = _BATCH_ANSWER.decode(body) if status == 200 else None
        if (
            answer is None
            or answer.created != size
            or len(answer.results) != size
            or any(item.status != 201 for item in answer.results)
        ):
            raise AssertionError(f"batch {position}: HTTP {status}, {body[:300]!r}")


def _metric(text: str, name: str) -> float:
    """The sum of a metric's samples over its label sets."""
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$"
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


# --- the ceilings -----------------------------------------------------------------------


@dataclass
class Ceilings:
    verify_1: float
    verify_2: float
    raw_insert: float


def measure_ceilings(engine_name: str, records: list[bytes], batch: int) -> Ceilings:
    with fresh_ledger(engine_name) as ledger:
        register_demo_keys(ledger.engine, DEMO_TENANT)
        raw = raw_insert_baseline(ledger, records, batch)
        one = verify_loop_baseline(ledger, records, 1)
        two = verify_loop_baseline(ledger, records, 2)
    return Ceilings(len(records) / one, len(records) / two, len(records) / raw)


# --- reporting --------------------------------------------------------------------------


def describe(run: Run) -> str:
    server = sum(run.server_cpu)
    split = "+".join(f"{cpu:.1f}" for cpu in run.server_cpu if cpu >= 0.05)
    return (
        f"{run.rate:>8,.0f}/s in {run.seconds:5.2f}s | latency ms p50 {run.percentile(0.50):6.1f} "
        f"p95 {run.percentile(0.95):6.1f} p99 {run.percentile(0.99):6.1f} | "
        f"CPU µs/record: server {run.per_record_us(server):.0f} ({split} s), "
        f"client {run.per_record_us(run.client_cpu):.0f}, "
        f"other {run.per_record_us(run.other_cpu):.0f}; "
        f"cores busy {run.machine_cpu / run.seconds:.2f} | commits {run.commits:,.0f}, "
        f"{run.committed / max(run.commits, 1):,.1f} records each, "
        f"{run.commit_seconds / max(run.commits, 1) * 1000:.1f} ms each"
    )


def summarize(runs: list[Run], ceilings: list[Ceilings]) -> None:
    verify_1 = statistics.median(ceiling.verify_1 for ceiling in ceilings)
    verify_2 = statistics.median(ceiling.verify_2 for ceiling in ceilings)
    raw = statistics.median(ceiling.raw_insert for ceiling in ceilings)
    print(
        f"  ceilings (median of {len(ceilings)}): Ed25519 verify loop 1 thread {verify_1:,.0f}/s, "
        f"2 threads {verify_2:,.0f}/s; raw INSERT of the same rows {raw:,.0f}/s"
    )
    print(
        f"  {'load':<7}{'workers':>8}{'records/s':>11}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'/verify1':>9}{'/verify2':>9}{'/INSERT':>9}{'CPU µs/rec: server':>19}"
        f"{'client':>7}{'other':>7}{'recs/commit':>12}  target"
    )
    for mode in ("batch", "single"):
        for workers in sorted({run.workers for run in runs}):
            group = [run for run in runs if run.mode == mode and run.workers == workers]
            if not group:
                continue
            rate = statistics.median(run.rate for run in group)
            p50, p95, p99 = (
                statistics.median(run.percentile(share) for run in group)
                for share in (0.50, 0.95, 0.99)
            )
            server = statistics.median(run.per_record_us(sum(run.server_cpu)) for run in group)
            client = statistics.median(run.per_record_us(run.client_cpu) for run in group)
            other = statistics.median(run.per_record_us(run.other_cpu) for run in group)
            per_commit = statistics.median(run.committed / max(run.commits, 1) for run in group)
            if mode == "batch":
                met = rate >= BATCH_TARGET
                target = f"{BATCH_TARGET:,}/s"
            else:
                met = rate >= SINGLE_TARGET and p99 <= SINGLE_P99_TARGET_MS
                target = f"{SINGLE_TARGET:,}/s, p99 <= {SINGLE_P99_TARGET_MS:.0f} ms"
            print(
                f"  {mode:<7}{workers:>8}{rate:>11,.0f}{p50:>8.1f}{p95:>8.1f}{p99:>8.1f}"
                f"{rate / verify_1:>9.2f}{rate / verify_2:>9.2f}{rate / raw:>9.2f}"
                f"{server:>19,.0f}{client:>7,.0f}{other:>7,.0f}{per_commit:>12,.1f}  {target}: "
                f"{'met' if met else 'NOT met'}"
            )


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--records", type=int, default=50_000, help="batch load (50,000)")
    parser.add_argument("--batch", type=int, default=1_000, help="records per body (1,000)")
    parser.add_argument("--senders", type=int, default=4, help="batch connections (4)")
    parser.add_argument("--single-records", type=int, default=20_000, help="(20,000)")
    parser.add_argument("--clients", type=int, default=64, help="single-record clients (64)")
    parser.add_argument(
        "--workers", type=int, action="append", help="server workers, PROV_WORKERS (1 and 2)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs of each configuration (2)")
    parser.add_argument(
        "--load", choices=("batch", "single"), action="append", help="default: both"
    )
    parser.add_argument(
        "--set",
        metavar="PROV_NAME=VALUE",
        action="append",
        default=[],
        help="a server setting, e.g. PROV_COMMIT_MAX_WAIT_MS=5",
    )
    parser.add_argument("--seed", type=int, default=1, help="demo record seed (1)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each server process with py-spy into DIR (slows the runs)",
    )
    args = parser.parse_args()
    for item in args.set:
        if not item.startswith("PROV_") or "=" not in item:
            parser.error(f"--set takes PROV_NAME=VALUE, not {item!r}")
    options = Options(
        records=args.records,
        single_records=args.single_records,
        batch=args.batch,
        senders=args.senders,
        clients=args.clients,
        server_settings=dict(item.split("=", 1) for item in args.set),
        profile=args.profile,
    )
    loads: list[str] = args.load or ["batch", "single"]
    worker_counts: list[int] = args.workers or [1, 2]
    started = time.perf_counter()
    # Every run gets a fresh database, so the same records are fresh ids in each.
    records = demo_records(
        max(args.records, args.single_records), content=args.content, seed=args.seed
    )
    gc.freeze()
    size = sum(map(len, records)) / len(records)
    print(
        f"{len(records):,} signed demo records ({args.content} content, mean envelope "
        f"{size:,.0f} bytes) made in {time.perf_counter() - started:.1f}s; "
        f"{os.cpu_count()} cores; server settings {options.server_settings or 'default'}"
    )
    counts = {"batch": args.records, "single": args.single_records}
    for engine_name in args.engine or ENGINES:
        runs: list[Run] = []
        ceilings: list[Ceilings] = []
        print(f"\n[{engine_name}]")
        for attempt in range(1, args.repeat + 1):
            for workers in worker_counts:
                for mode in loads:
                    run = measure(engine_name, mode, workers, records[: counts[mode]], options)
                    runs.append(run)
                    print(f"  {mode:<6} workers={workers} run {attempt}: {describe(run)}")
            ceiling = measure_ceilings(engine_name, records[: args.records], args.batch)
            ceilings.append(ceiling)
            print(
                f"  ceilings run {attempt}: verify 1 thread {ceiling.verify_1:,.0f}/s, "
                f"2 threads {ceiling.verify_2:,.0f}/s, raw INSERT {ceiling.raw_insert:,.0f}/s"
            )
        print(f"\n[{engine_name}] medians of {args.repeat} runs")
        summarize(runs, ceilings)


if __name__ == "__main__":
    main()
