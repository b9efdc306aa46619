"""Batch append with signature verification, beside two baselines from the same run:
a raw INSERT of the same rows into a plain table, and a bare signature-verification loop
over the same records. Target: 20,000 records/s on each engine.

    python -m bench.append [--records 20000] [--batch 1000] [--engine sqlite|postgres]
"""

from __future__ import annotations

import os

from bench.baselines import raw_insert_baseline, verify_loop_baseline
from bench.common import (
    ENGINES,
    engine_arguments,
    fresh_ledger,
    median_of,
    rate,
    signed_demo_records,
)
from ledger.log.receipt import Receipt


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    print(f"{args.records:,} demo records, batches of {args.batch:,}, {os.cpu_count()} cores")
    for engine_name in args.engine or ENGINES:
        with fresh_ledger(engine_name) as ledger:
            records = signed_demo_records(ledger, args.records, content=args.content)
            size = sum(map(len, records)) / len(records)
            raw_seconds = raw_insert_baseline(ledger, records, args.batch)

            def append_all(records: list[bytes] = records) -> None:
                batches = (
                    records[start : start + args.batch]
                    for start in range(0, len(records), args.batch)
                )
                for results in ledger.append_many(batches):
                    assert all(isinstance(result, Receipt) for result in results)

            append_seconds = median_of(1, append_all)
            assert ledger.latest_checkpoint().tree_size == len(records)
            one_thread = verify_loop_baseline(ledger, records, 1)
            two_threads = verify_loop_baseline(ledger, records, 2)
        print(f"\n[{engine_name}] {args.content} content, mean envelope {size:,.0f} bytes")
        print(
            f"  ledger append (verify + sequence + receipts) {rate(len(records), append_seconds)}"
        )
        print(f"  baseline raw INSERT of the same rows        {rate(len(records), raw_seconds)}")
        print(f"  baseline signature verify, 1 thread         {rate(len(records), one_thread)}")
        print(f"  baseline signature verify, 2 threads        {rate(len(records), two_threads)}")
        print(f"  append / raw INSERT = {raw_seconds / append_seconds:.2f}")


if __name__ == "__main__":
    main()
