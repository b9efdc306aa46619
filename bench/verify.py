"""`prov verify` speed: entries/s for the full recomputation, and separately for the
signature re-check, beside a baseline from the same run: a bare scan that reads the same
rows and SHA-256s each envelope. Target: 200,000 entries/s without signatures.

    python -m bench.verify [--records 400000] [--engine sqlite|postgres]
"""

from __future__ import annotations

import hashlib
import os

from bench.common import ENGINES, engine_arguments, fresh_ledger, rate, signed_demo_records, timed
from ledger.ledger import Ledger
from ledger.log.store import read_head, stream_entries

APPEND_BATCH = 2_000


def scan_baseline(ledger: Ledger) -> float:
    """Read every row the verifier reads and hash its envelope, nothing more."""

    def scan() -> None:
        with ledger.engine.connect() as connection, connection.begin():
            for rows in stream_entries(connection, 0, read_head(connection).size):
                for row in rows:
                    hashlib.sha256(row[2]).digest()

    return timed(scan)


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--records", type=int, default=400_000)
    args = parser.parse_args()
    print(f"{args.records:,} demo records, {os.cpu_count()} cores")
    for engine_name in args.engine or ENGINES:
        with fresh_ledger(engine_name) as ledger:
            # Each record is signed once up front; building the log is not what is measured.
            records = signed_demo_records(ledger, args.records, content=args.content)
            for start in range(0, len(records), APPEND_BATCH):
                ledger.append(records[start : start + APPEND_BATCH])
            scan = scan_baseline(ledger)
            plain = timed(lambda: _ok(ledger.verify()))
            signatures = timed(lambda: _ok(ledger.verify(signatures=True)))
        print(f"\n[{engine_name}]")
        print(f"  verify (leaves, chain, nodes, checkpoints)  {rate(args.records, plain)}")
        print(f"  verify --signatures                        {rate(args.records, signatures)}")
        print(f"  baseline scan + SHA-256 of each envelope    {rate(args.records, scan)}")
        print(f"  verify / scan = {scan / plain:.2f}")


def _ok(report: object) -> None:
    if not report:
        raise SystemExit(f"verification failed: {report}")


if __name__ == "__main__":
    main()
