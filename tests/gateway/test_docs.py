"""docs/gateway.md kept true: its curl examples run against a fresh server and print what
the page shows (cluster and member ids and raft terms aside), and its table lists every path."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8s_sql.gateway.jsonpb import json_values
from k8s_sql.gateway.routes import BINDINGS
from tests.differential import strip_identity
from tests.processes import SOURCE_ROOT, K8sSQL

PAGE = SOURCE_ROOT / "docs" / "gateway.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```\n", re.DOTALL)


def examples() -> list[tuple[str, str | None]]:
    """Each ``sh`` block of the page, with the ``json`` block right after it, if any."""
    text = PAGE.read_text()
    blocks = [(match.group(1), match.group(2), match.start(), match.end()) for match in BLOCK.finditer(text)]
    found = []
    for index, (language, body, _, end) in enumerate(blocks):
        if language != "sh":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        output = following[1] if following and following[0] == "json" and following[2] == end else None
        found.append((body, output))
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[K8sSQL]:
    with K8sSQL(f"sqlite:///{tmp_path}/k8s-sql.db") as server:
        yield server


def values(text: str) -> list[Any]:
    return strip_identity(list(json_values(text)))


def test_the_curl_examples_print_what_the_page_shows(server: K8sSQL) -> None:
    found = examples()
    assert len(found) >= 10 and sum(output is not None for _, output in found) >= 8
    for script, output in found:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace("127.0.0.1:2379", server.endpoint)],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, (script, result.stderr)
        if output is not None:
            assert values(result.stdout) == values(output), script


def test_the_path_table_lists_every_binding() -> None:
    rows = re.findall(r"^\| `(/v3/[^`]+)` \| `(\w+)\.(\w+)`", PAGE.read_text(), re.MULTILINE)
    assert {path: (service, method) for path, service, method in rows} == BINDINGS
