"""The same OTLP export sent to `prov serve` and to the tracing tools beside it.

One run sends the same traces (`bench/otlp_load.py`: 4 GenAI spans each, about 2.5 KB of
attribute keys and values) to each server in turn, on the same cores:

- Arize Phoenix and MLflow's tracing server, installed from PyPI into venvs of their own
  under --peers-dir (once; not dependencies of the project), each with its default settings
  and a SQLite store in a temporary folder; they are the baseline;
- `prov serve` over SQLite and over PostgreSQL, which signs each trace's decision into the
  log.

For each server: traces/s accepted (every POST answered 200 with no rejected spans; a 503
or 429 is waited out and sent again, as an exporter retries), traces/s durably stored (from
the first POST until the last trace acknowledged is readable through the server's API and
the store holds every trace), fetch-by-id latency over the server's API, and the server's
peak RSS (VmRSS summed over its process tree, sampled every 0.5 s). Senders are threads,
each POSTing pre-built `ExportTraceServiceRequest` bodies of --batch traces to
`/v1/traces` (application/x-protobuf) as soon as its previous one is answered. A warm-up of
other traces (32 bodies of 5, each on a new connection, so that every worker process has
started) goes first and is not timed. The target is a durable rate at least 10x the better
peer's, with every trace signed: after prov's run `prov verify --signatures` re-checks
every record's signature.

    python -m bench.otlp_peers [--traces 5000 | --full] [--server phoenix --server prov-sqlite]
        [--batch 100] [--senders 8] [--fetches 200] [--peers-dir DIR] [--prov-workers 1]
        [--set PROV_NAME=VALUE]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench import otlp_servers
from bench.ingest_http import process_cpu
from bench.otlp_load import Batch, Trace, attribute_bytes, build_batches
from bench.otlp_servers import Target

SERVERS = ("phoenix", "mlflow", "prov-sqlite", "prov-postgres")
PEERS = ("phoenix", "mlflow")
TARGET_RATIO = 10.0
FULL_TRACES = 20_000
RETRY_STATUSES = {429, 503}
WARMUP_BATCHES = 32


@dataclass
class Result:
    server: str
    version: str
    traces: int
    accepted_s: float
    durable_s: float
    fetch_ms: list[float]
    rss_peak_mb: float
    cpu_ms_per_trace: float
    retries: int
    load: float  # the machine's 1-minute load average when the run ended
    note: str = ""

    @property
    def accepted_rate(self) -> float:
        return self.traces / self.accepted_s

    @property
    def durable_rate(self) -> float:
        return self.traces / self.durable_s

    def fetch(self, share: float) -> float:
        ordered = sorted(self.fetch_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- sending ------------------------------------------------------------------------------


@dataclass
class Sent:
    started: float = 0.0
    last_ack: float = 0.0
    last_trace: Trace | None = None
    retries: int = 0
    errors: list[str] = field(default_factory=list)


def send_all(
    target: Target,
    batches: list[Batch],
    senders: int,
    deadline_s: float,
    *,
    fresh_connections: bool = False,
) -> Sent:
    """Every batch POSTed until accepted, by `senders` threads, each keeping one connection
    open, or with `fresh_connections` a new one per batch (so that the kernel spreads them
    over every worker process of a server)."""
    sent = Sent()
    lock = threading.Lock()
    queue = iter(batches)
    headers = target.headers | {"Content-Type": "application/x-protobuf"}

    def sender() -> None:
        client = httpx.Client(timeout=120, headers=headers)
        try:
            while True:
                with lock:
                    batch = next(queue, None)
                if batch is None or sent.errors:
                    return
                if fresh_connections:
                    client.close()
                    client = httpx.Client(timeout=120, headers=headers)
                problem = _post(client, target.ingest_url, batch, sent, lock, deadline_s)
                if problem is not None:
                    with lock:
                        sent.errors.append(problem)
                    return
        finally:
            client.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    sent.started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if sent.errors:
        raise RuntimeError(f"{target.name}: {sent.errors[0]}")
    return sent


def _post(
    client: httpx.Client,
    url: str,
    batch: Batch,
    sent: Sent,
    lock: threading.Lock,
    deadline_s: float,
) -> str | None:
    """POST one batch until it is accepted; a problem as text, else None."""
    wait = 0.05
    while True:
        answer = client.post(url, content=batch.body)
        if answer.status_code in RETRY_STATUSES:
            if time.perf_counter() - sent.started > deadline_s:
                return f"still answered {answer.status_code} after {deadline_s:.0f} s"
            with lock:
                sent.retries += 1
            time.sleep(wait)
            wait = min(wait * 2, 1.0)
            continue
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}: {answer.text[:500]}"
        if answer.content and answer.headers.get("content-type", "").startswith(
            "application/x-protobuf"
        ):
            response = ExportTraceServiceResponse()
            response.ParseFromString(answer.content)
            if response.partial_success.rejected_spans:
                return (
                    f"{response.partial_success.rejected_spans} spans rejected: "
                    f"{response.partial_success.error_message}"
                )
        with lock:
            now = time.perf_counter()
            if now >= sent.last_ack:
                sent.last_ack, sent.last_trace = now, batch.traces[-1]
        return None


# --- measuring ----------------------------------------------------------------------------


def _rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
    return total_kb / 1024


@contextlib.contextmanager
def rss_sampler(target: Target) -> Iterator[Callable[[], float]]:
    """The peak over the run of the server's summed VmRSS, sampled every 0.5 s."""
    peak = [_rss_mb(target.pids())]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], _rss_mb(target.pids()))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: peak[0]
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_mb(target.pids()))


def wait_durable(
    target: Target, client: httpx.Client, last: Trace, expected: int, timeout_s: float
) -> float:
    """Polls until `last` is readable through the API and the store holds `expected`
    traces; the perf_counter time it first saw both."""
    deadline = time.perf_counter() + timeout_s
    readable = False
    while True:
        readable = readable or target.read(client, last) is not None
        if readable and target.stored() >= expected:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"{target.name}: not durable after {timeout_s:.0f} s "
                f"(last trace readable: {readable}, stored {target.stored()} of {expected})"
            )
        time.sleep(0.05)


def fetch_latencies(
    target: Target, client: httpx.Client, traces: list[Trace], count: int, seed: int
) -> list[float]:
    """Milliseconds to read each of `count` random traces by id, one after another."""
    chosen = random.Random(seed).sample(traces, min(count, len(traces)))
    latencies = []
    for trace in chosen:
        started = time.perf_counter()
        found = target.read(client, trace)
        latencies.append((time.perf_counter() - started) * 1000)
        if found is None:
            raise AssertionError(f"{target.name}: trace {trace.trace_id} is not readable")
    return latencies


def measure(target: Target, warmup: list[Batch], batches: list[Batch], options: Options) -> Result:
    traces = [trace for batch in batches for trace in batch.traces]
    with httpx.Client(timeout=60) as reader:
        # Untimed: first-use work (imports, tables, projects, caches, connections) in
        # every worker process is not ingest.
        warm = send_all(
            target, warmup, options.senders, options.durable_timeout, fresh_connections=True
        )
        assert warm.last_trace is not None
        warm_count = sum(len(batch.traces) for batch in warmup)
        wait_durable(target, reader, warm.last_trace, warm_count, options.durable_timeout)
        pids = target.pids()
        cpu_before = sum(process_cpu(pid) for pid in pids)
        with rss_sampler(target) as peak:
            sent = send_all(target, batches, options.senders, options.durable_timeout)
            assert sent.last_trace is not None
            durable_at = wait_durable(
                target, reader, sent.last_trace, warm_count + len(traces), options.durable_timeout
            )
            cpu = sum(process_cpu(pid) for pid in target.pids()) - cpu_before
        fetches = fetch_latencies(target, reader, traces, options.fetches, options.seed)
        rss = peak()
    note = target.after()
    return Result(
        server=target.name,
        version=target.version,
        traces=len(traces),
        accepted_s=sent.last_ack - sent.started,
        durable_s=durable_at - sent.started,
        fetch_ms=fetches,
        rss_peak_mb=rss,
        cpu_ms_per_trace=cpu * 1000 / len(traces),
        retries=sent.retries,
        load=os.getloadavg()[0],
        note=note,
    )


# --- running ------------------------------------------------------------------------------


@dataclass
class Options:
    senders: int
    fetches: int
    seed: int
    durable_timeout: float
    peers_dir: Path
    phoenix_spec: str
    mlflow_spec: str
    prov_workers: int
    prov_settings: dict[str, str]


def start(name: str, options: Options) -> contextlib.AbstractContextManager[Target]:
    if name == "phoenix":
        return otlp_servers.phoenix(options.peers_dir, options.phoenix_spec)
    if name == "mlflow":
        return otlp_servers.mlflow(options.peers_dir, options.mlflow_spec)
    engine = name.removeprefix("prov-")
    return otlp_servers.prov(engine, options.prov_workers, options.prov_settings)


def report(results: list[Result]) -> None:
    print(
        f"\n{'server':<26}{'version':>9}{'traces':>8}{'accepted/s':>12}{'durable/s':>11}"
        f"{'fetch p50 ms':>14}{'p95 ms':>8}{'peak RSS MB':>13}{'CPU ms/trace':>14}{'503s':>6}"
    )
    for result in results:
        print(
            f"{result.server:<26}{result.version:>9}{result.traces:>8,}"
            f"{result.accepted_rate:>12,.0f}{result.durable_rate:>11,.0f}"
            f"{result.fetch(0.50):>14.1f}{result.fetch(0.95):>8.1f}{result.rss_peak_mb:>13,.0f}"
            f"{result.cpu_ms_per_trace:>14.2f}{result.retries:>6}{result.load:>6.1f}"
        )
    peers = [result for result in results if not result.server.startswith("prov")]
    ours = [result for result in results if result.server.startswith("prov")]
    if not peers or not ours:
        return
    best = max(peers, key=lambda result: result.durable_rate)
    print(f"\nbaseline: the better peer's durable rate, {best.server}: {best.durable_rate:,.0f}/s")
    for result in ours:
        ratio = result.durable_rate / best.durable_rate
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(
            f"  {result.server}: {result.durable_rate:,.0f}/s = {ratio:.1f}x "
            f"(target >= {TARGET_RATIO:.0f}x: {verdict}); {result.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=5_000, help="traces sent (5,000)")
    parser.add_argument(
        "--full", action="store_true", help=f"the reference load: {FULL_TRACES:,} traces"
    )
    parser.add_argument("--batch", type=int, default=100, help="traces per POST (100)")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders (8)")
    parser.add_argument("--fetches", type=int, default=200, help="traces read back by id (200)")
    parser.add_argument("--server", choices=SERVERS, action="append", help="default: all four")
    parser.add_argument("--seed", type=int, default=1, help="trace and sample seed (1)")
    parser.add_argument(
        "--durable-timeout", type=float, default=1800, help="seconds to wait for a store (1800)"
    )
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=otlp_servers.DEFAULT_PEERS_DIR,
        help=f"where the peers' venvs live ({otlp_servers.DEFAULT_PEERS_DIR})",
    )
    parser.add_argument("--phoenix-spec", default=otlp_servers.PHOENIX_SPEC)
    parser.add_argument("--mlflow-spec", default=otlp_servers.MLFLOW_SPEC)
    parser.add_argument("--prov-workers", type=int, default=1, help="PROV_WORKERS (1)")
    parser.add_argument(
        "--set",
        metavar="PROV_NAME=VALUE",
        action="append",
        default=[],
        help="a prov serve setting, e.g. PROV_COMMIT_MAX_WAIT_MS=5",
    )
    args = parser.parse_args()
    for item in args.set:
        if not item.startswith("PROV_") or "=" not in item:
            parser.error(f"--set takes PROV_NAME=VALUE, not {item!r}")
    for name in ("traces", "batch", "senders", "fetches", "prov_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    options = Options(
        senders=args.senders,
        fetches=args.fetches,
        seed=args.seed,
        durable_timeout=args.durable_timeout,
        peers_dir=args.peers_dir.expanduser(),
        phoenix_spec=args.phoenix_spec,
        mlflow_spec=args.mlflow_spec,
        prov_workers=args.prov_workers,
        prov_settings=dict(item.split("=", 1) for item in args.set),
    )
    count = FULL_TRACES if args.full else args.traces
    made = time.perf_counter()
    batches = build_batches(count, args.batch, seed=args.seed)
    # Other ids than the measured traces, so that the warm-up never satisfies a poll; small
    # batches, enough of them to reach every worker process.
    warmup = build_batches(WARMUP_BATCHES * 5, 5, seed=args.seed + 10_000)
    body = statistics.mean(len(batch.body) for batch in batches)
    print(
        f"{count:,} traces of 4 spans ({attribute_bytes(batches):,.0f} bytes of attributes "
        f"per trace) in {len(batches)} bodies of {args.batch} (mean {body / 1024:,.0f} KiB), "
        f"built in {time.perf_counter() - made:.1f}s; {args.senders} senders"
    )
    results = []
    for name in args.server or SERVERS:
        print(f"\n[{name}] starting", flush=True)
        with start(name, options) as target:
            result = measure(target, warmup, batches, options)
        results.append(result)
        print(
            f"  {result.server} {result.version}: accepted {result.accepted_rate:,.0f}/s "
            f"({result.accepted_s:.2f}s), durable {result.durable_rate:,.0f}/s "
            f"({result.durable_s:.2f}s), fetch p50 {result.fetch(0.5):.1f} ms p95 "
            f"{result.fetch(0.95):.1f} ms, peak RSS {result.rss_peak_mb:,.0f} MB, "
            f"{result.retries} retried POSTs {result.note}",
            flush=True,
        )
    report(results)


if __name__ == "__main__":
    main()
