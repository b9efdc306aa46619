"""Batch ingest through `prov serve` with two witnesses configured, beside the same load
without them, alternating in one run (docs/benchmarks.md "Witnesses").

Each round starts two `prov witness serve` processes with fresh state on loopback, then runs
the batch load of `bench.ingest_http` against a fresh server with `PROV_WITNESSES` naming
them, and the same load against a fresh server without; the order alternates each round.
The witnesses follow a ledger key made once for the run. After a witnessed run each
witness must hold a cosigned checkpoint of that run (its monitoring endpoint says which
size). Target: the witnessed rate at least 0.95x the plain one (medians).

    python -m bench.witness_ingest [--engine sqlite|postgres] [--records 50000] [--repeat 3]
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.common import ENGINES, demo_records, engine_arguments
from bench.ingest_http import HOST, Options, Run, free_port, measure
from ledger.keys.ed25519 import SigningKey, save_signing_key
from ledger.ledger import DEFAULT_ORIGIN
from ledger.log.note import NoteSigner

PROV = str(Path(sys.executable).with_name("prov"))
TARGET = 0.95


@contextlib.contextmanager
def witnesses(folder: Path, log_key: str, count: int = 2) -> Iterator[tuple[str, list[str]]]:
    """`count` witnesses following the log key, with fresh state; yields PROV_WITNESSES
    and the witnesses' URLs."""
    processes: list[subprocess.Popen[bytes]] = []
    entries = []
    try:
        for number in range(1, count + 1):
            name = f"w{number}.bench.example"
            key_file = folder / f"w{number}-{time.monotonic_ns()}.key"
            made = subprocess.run(
                [PROV, "witness", "key", "--name", name, "--key-file", str(key_file)],
                capture_output=True,
                check=True,
            )
            vkey = made.stdout.decode().strip().splitlines()[-1]
            port = free_port()
            state = folder / f"w{number}-{time.monotonic_ns()}.db"
            log_path = folder / f"w{number}.log"
            with log_path.open("ab") as log:
                processes.append(
                    subprocess.Popen(
                        [
                            PROV,
                            "witness",
                            "serve",
                            "--name",
                            name,
                            "--key-file",
                            str(key_file),
                            "--state",
                            str(state),
                            "--log",
                            log_key,
                            "--host",
                            HOST,
                            "--port",
                            str(port),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait(f"http://{HOST}:{port}/healthz", processes[-1])
            entries.append(f"{vkey}@http://{HOST}:{port}")
        yield ",".join(entries), [entry.split("@", 1)[1] for entry in entries]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the witness exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the witness did not start at {url}")


def cosigned_size(url: str) -> int:
    """The size of the newest checkpoint the witness cosigned for the bench's log."""
    origin_hash = hashlib.sha256(DEFAULT_ORIGIN.encode()).hexdigest()
    answer = httpx.get(f"{url}/{origin_hash}/checkpoint", timeout=5)
    if answer.status_code == 404:
        raise AssertionError(f"the witness at {url} cosigned nothing during the run")
    answer.raise_for_status()
    return int(answer.text.split("\n")[1])


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--records", type=int, default=50_000, help="records per run (50,000)")
    parser.add_argument("--batch", type=int, default=1_000, help="records per body (1,000)")
    parser.add_argument("--senders", type=int, default=4, help="batch connections (4)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (3)")
    args = parser.parse_args()
    records = demo_records(args.records, content=args.content, seed=1)
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="prov-bench-witness-") as name:
        folder = Path(name)
        ledger_key = folder / "ledger.key"
        signing_key = SigningKey.generate()
        save_signing_key(signing_key, ledger_key)
        log_key = NoteSigner(DEFAULT_ORIGIN, signing_key).verifier.encode()
        for engine_name in args.engine or ENGINES:
            plain: list[Run] = []
            witnessed: list[Run] = []
            print(f"[{engine_name}] {args.records:,} records in batches of {args.batch}")
            for round_number in range(args.repeat):
                order = ("plain", "witnessed") if round_number % 2 == 0 else ("witnessed", "plain")
                for kind in order:
                    options = Options(
                        records=args.records,
                        single_records=0,
                        batch=args.batch,
                        senders=args.senders,
                        clients=1,
                        server_settings={},
                        profile=None,
                        ledger_key=ledger_key,
                    )
                    if kind == "plain":
                        run = measure(engine_name, "batch", 1, records, options)
                        plain.append(run)
                    else:
                        with witnesses(folder, log_key) as (configured, urls):
                            options.server_settings = {
                                "PROV_WITNESSES": configured,
                                "PROV_WITNESS_INTERVAL_SECONDS": "1.0",
                            }
                            run = measure(engine_name, "batch", 1, records, options)
                            cosigned = [cosigned_size(url) for url in urls]
                        witnessed.append(run)
                    seen = "" if kind == "plain" else f" (witnesses cosigned sizes {cosigned})"
                    print(f"  round {round_number + 1} {kind:<9} {run.rate:>9,.0f} records/s{seen}")
            plain_rate = statistics.median(r.rate for r in plain)
            witnessed_rate = statistics.median(r.rate for r in witnessed)
            ratio = witnessed_rate / plain_rate
            print(
                f"  medians: without witnesses {plain_rate:,.0f}/s, with two "
                f"{witnessed_rate:,.0f}/s = {ratio:.2f}x (target >= {TARGET}: "
                f"{'met' if ratio >= TARGET else 'NOT met'})"
            )


if __name__ == "__main__":
    main()
