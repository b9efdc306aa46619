"""How long `import ingest.client` takes, beside an interpreter that imports nothing.

Each run is a fresh `python -X importtime -c "import <module>"`; the figure is the
cumulative time the top-level import reports (everything it pulled in), the median of the
runs. The baseline is `python -X importtime -c pass` from the same run: the interpreter's own
start-up imports, which every figure above also pays. Target: under 150 ms for the client.

    python -m bench.client_import [--runs 9] [--python PATH] [--module ingest.client ...]

Run it with the python of a client-only install (`pip install .`, no extras) to measure
what a service sees; with the dev venv it measures the same modules with more installed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

TARGET_MS = 150.0
MODULES = ("ingest.client", "query.audit.report_check")


def cumulative_us(python: str, code: str, module: str | None) -> int:
    """The cumulative microseconds `-X importtime` reports for `module` (or, for the
    baseline, the sum over the top-level imports)."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    total = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, shown = line.removeprefix("import time:").split("|")
        # Nested imports are indented two spaces a level after the separator's one.
        top_level = not shown.removeprefix(" ").startswith(" ")
        if module is None and top_level:
            total += int(cumulative)
        elif top_level and shown.strip() == module:
            return int(cumulative)
    if module is not None:
        raise RuntimeError(f"{module} does not appear in the import-time report")
    return total


def median_ms(python: str, code: str, module: str | None, runs: int) -> float:
    return statistics.median(cumulative_us(python, code, module) for _ in range(runs)) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--python", default=sys.executable, help="The interpreter to measure")
    parser.add_argument("--module", action="append", help=f"Default: {', '.join(MODULES)}")
    args = parser.parse_args()
    baseline = median_ms(args.python, "pass", None, args.runs)
    print(f"{args.python}, median of {args.runs} runs")
    print(f"  baseline (python -c pass, start-up imports): {baseline:7.1f} ms")
    for module in args.module or MODULES:
        took = median_ms(args.python, f"import {module}", module, args.runs)
        verdict = "ok" if took < TARGET_MS else f"over the {TARGET_MS:.0f} ms target"
        print(f"  import {module:<28} {took:7.1f} ms  ({verdict})")


if __name__ == "__main__":
    main()
