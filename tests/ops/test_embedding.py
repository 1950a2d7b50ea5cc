"""The embedding examples of docs/embedding.md, run as they are written there."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.ops.support import TWISTD
from tests.processes import SOURCE_ROOT, ServerProcess, etcdctl, free_port

DOC = SOURCE_ROOT / "docs" / "embedding.md"


def example(name: str) -> str:
    """The code block that follows ``<!-- example: name -->`` in the document."""
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, f"no example {name} in {DOC}"
    return match.group(1)


def test_the_embedded_program(tmp_path: Path) -> None:
    program = tmp_path / "embedded.py"
    program.write_text(example("embedded.py"))
    process = ServerProcess([sys.executable, str(program), f"sqlite:///{tmp_path}/state.db"], cwd=str(tmp_path))
    try:
        endpoint = process.wait_for_output(r"^etcd API on http://(127\.0\.0\.1:\d+)$").group(1)
        assert process.wait_for_output(r"^stages: ").string.split() == [
            "stages:", "store", "follower", "housekeeping", "etcd", "peers", "client", "metrics", "members",
        ]
        # The application's own write, made through the store, served to etcdctl.
        assert etcdctl(endpoint, "get", "/my-app/started", "--print-value-only").stdout == "yes\n"
        assert etcdctl(endpoint, "put", "from-etcdctl", "1").stdout == "OK\n"
    finally:
        status = process.stop()
    assert status == 0, process.text()
    assert "Traceback" not in process.text()


def test_the_tac_file_under_twistd(tmp_path: Path) -> None:
    port = free_port()
    tac = tmp_path / "k8s-sql.tac"
    tac.write_text(example("k8s-sql.tac").replace("tcp:2379:", f"tcp:{port}:"))
    process = ServerProcess([TWISTD, "-ny", str(tac), "--pidfile="], cwd=str(tmp_path))
    try:
        process.wait_for_output(rf"serving the etcd API on 127\.0\.0\.1:{port}")
        assert etcdctl(f"127.0.0.1:{port}", "put", "tac", "ok").stdout == "OK\n"
        assert etcdctl(f"127.0.0.1:{port}", "get", "tac", "--print-value-only").stdout == "ok\n"
    finally:
        process.stop()
    assert (tmp_path / "state.db").exists()
    assert "Traceback" not in process.text()
