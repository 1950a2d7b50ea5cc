"""The short robustness run of CI: 40 s per backend of etcd- and Kubernetes-like traffic
under every fault that applies, then every check (tests/robustness/checker.py).

Longer runs: ``python -m tests.robustness --duration 10m`` (docs/reliability.md).
"""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS, ReactorThread, database_server
from tests.robustness.run import FAULTS, run

DURATION = 40.0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", BACKENDS)
def test_a_short_run_keeps_every_guarantee(name: str, reactor_thread: ReactorThread) -> None:
    if name != "sqlite":
        database_server(name)  # skips (or fails with CI=true) when the server is unreachable
    result = run(name, DURATION, seed=7, quiet=2.5, reactor=reactor_thread)
    assert result.violations == []
    counts = result.counts
    assert {fault for fault, times in result.faults.items() if times} == {f for f, on in FAULTS.items() if name in on}
    assert counts["writes checked"] > 500 and counts["unknown outcome"] > 0
    assert counts["watch events checked"] > 500 and counts["progress notifications"] > 0
    assert counts["operations.Compact"] > 0 and counts["operations.LeaseRevoke"] > 0
    assert result.warnings <= 2 * sum(result.faults.values()), "the servers' log should stay quiet through faults"
