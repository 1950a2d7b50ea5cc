"""Long robustness runs: ``python -m tests.robustness --duration 30m [--backend sqlite ...]``.

Each backend runs for the duration given, one after the other, with every fault that applies
to it; the figures (operations, faults, checks, RSS of the first server over time) are
printed and, with ``--json``, written to a file.  Exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from k8s_sql.durations import parse_duration
from tests.conftest import BACKENDS, ReactorThread
from tests.robustness.run import FAULTS, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.robustness", description=__doc__)
    parser.add_argument("--duration", default="60s", help="per backend, e.g. 90s, 10m (default 60s)")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable; default: all three")
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS), help="repeatable; default: all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds between faults, at least (default 3)")
    parser.add_argument("--pace", type=float, default=1.0, help="stretch the pauses between operations (default 1)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", help="pickle the history here when a check fails")
    options = parser.parse_args()
    duration = parse_duration(options.duration)
    reactor = ReactorThread()
    results = []
    try:
        for backend in options.backend or BACKENDS:
            result = run(
                backend, duration, seed=options.seed, faults=options.fault, quiet=options.quiet, reactor=reactor, pace=options.pace,
                progress=lambda line: print(time.strftime("%H:%M:%S"), line, flush=True), keep=options.keep,
            )
            results.append(result)
            print(summary(result), flush=True)
    finally:
        reactor.stop()
    if options.json:
        with open(options.json, "w") as file:
            json.dump([asdict(result) for result in results], file, indent=1)
    return 1 if any(result.violations for result in results) else 0


def summary(result) -> str:  # type: ignore[no-untyped-def]
    """A few lines on one run."""
    counts = result.counts
    rss = [sample[2] for sample in result.rss]
    lines = [
        f"{result.backend}: {result.seconds:.0f} s, {counts.get('operations', 0)} operations "
        f"({counts.get('unknown outcome', 0)} of unknown outcome, {counts.get('unknown outcomes resolved', 0)} "
        f"found in the log), {counts.get('revisions', 0)} revisions, {counts.get('writes checked', 0)} writes checked, "
        f"{counts.get('lease expiries', 0)} lease expiries",
        f"  faults: {result.faults}",
        f"  watches: {counts.get('watch streams', 0)} streams, {counts.get('watch events checked', 0)} events checked, "
        f"{counts.get('progress notifications', 0)} progress notifications",
        f"  RSS of the first server: {min(rss, default=0) >> 20}-{max(rss, default=0) >> 20} MiB; "
        f"log: {result.log_lines} lines, {result.warnings} warnings or errors",
        f"  violations: {len(result.violations)}",
        *(f"    {violation}" for violation in result.violations[:20]),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
