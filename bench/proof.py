"""Inclusion-proof latency at 1,000,000 entries (target: under 5 ms), beside a baseline
from the same run: a single primary-key lookup of one leaf hash.

The log is built through the real sequencer (entries, tree nodes, checkpoints) from
pre-admitted small records, because signing a million demo decisions would measure
signing, not proofs.

    python -m bench.proof [--entries 1000000] [--proofs 2000] [--engine sqlite|postgres]
"""

from __future__ import annotations

import random
import statistics
import time

from sqlalchemy import text

from bench.common import ENGINES, engine_arguments, fresh_ledger
from ledger.admission import Admitted
from ledger.log import merkle
from ledger.log.proofs import inclusion_proof
from ledger.log.sequencer import append
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.signed import PRODUCER_SIGNED

BUILD_BATCH = 20_000


def build(ledger: object, entries: int) -> None:
    for start in range(0, entries, BUILD_BATCH):
        batch = [
            Admitted(
                f"record {n}".encode(),
                DECISION_PAYLOAD_TYPE,
                "acme",
                f"bench-{n}",
                "bench",
                (
                    "acme",
                    f"bench-{n}",
                    "bench",
                    "bench.proof",
                    n,
                    "m",
                    "1",
                    None,
                    None,
                    "{}",
                    PRODUCER_SIGNED,
                ),
            )
            for n in range(start, min(start + BUILD_BATCH, entries))
        ]
        append(ledger.engine, batch, ledger.signer, ledger.origin)  # type: ignore[attr-defined]


def percentile(samples: list[float], share: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(share * len(samples)))]


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2_000)
    args = parser.parse_args()
    rng = random.Random(1)
    for engine_name in args.engine or ENGINES:
        with fresh_ledger(engine_name) as ledger:
            started = time.perf_counter()
            build(ledger, args.entries)
            built = time.perf_counter() - started
            checkpoint = ledger.latest_checkpoint()
            proof_ms, lookup_ms = [], []
            with ledger.engine.connect() as connection:
                for _ in range(args.proofs):
                    index = rng.randrange(args.entries)
                    t0 = time.perf_counter()
                    proof = inclusion_proof(connection, index, checkpoint.tree_size)
                    t1 = time.perf_counter()
                    connection.execute(
                        text("SELECT leaf_hash FROM log_entries WHERE idx = :i"), {"i": index}
                    ).scalar_one()
                    t2 = time.perf_counter()
                    proof_ms.append((t1 - t0) * 1000)
                    lookup_ms.append((t2 - t1) * 1000)
                    assert merkle.verify_inclusion(
                        proof.leaf_hash, index, proof.tree_size, proof.proof, checkpoint.root_hash
                    )
        print(f"\n[{engine_name}] {args.entries:,} entries built in {built:.1f}s")
        print(
            f"  inclusion proof       median {statistics.median(proof_ms):.3f} ms, "
            f"p99 {percentile(proof_ms, 0.99):.3f} ms ({args.proofs} random indexes)"
        )
        print(
            f"  baseline leaf lookup  median {statistics.median(lookup_ms):.3f} ms, "
            f"p99 {percentile(lookup_ms, 0.99):.3f} ms"
        )


if __name__ == "__main__":
    main()
