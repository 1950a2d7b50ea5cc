"""The documentation kept in sync with the code: the configuration reference with the
command's options, the metrics page with the metrics served."""

from __future__ import annotations

import re

from twisted.internet.testing import MemoryReactor

from k8s_sql.config import ProcessConfig, ServerConfig
from k8s_sql.metrics.collectors import ServerMetrics
from k8s_sql.options import TABLE_END, TABLE_START
from k8s_sql.tap import OPTIONS, Options
from k8s_sql.workers.supervisor import WorkerSupervisor
from tests.processes import SOURCE_ROOT

DOCS = SOURCE_ROOT / "docs"


def table_rows(document: str) -> list[list[str]]:
    """The cells of every table row whose first cell is code (`...`)."""
    rows = []
    for line in (DOCS / document).read_text().splitlines():
        if line.startswith("| `"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_configuration_reference_is_the_option_table() -> None:
    page = (DOCS / "configuration.md").read_text()
    generated = page.split(TABLE_START + "\n", 1)[1].split("\n" + TABLE_END, 1)[0]
    assert generated == Options.markdown(), "run: python -m k8s_sql.options docs/configuration.md"
    documented = {row[0].strip("`") for row in table_rows("configuration.md")}
    assert documented == {"--" + name.rstrip("=") for name in Options().longOpt}
    assert "| `--listen` | `tcp:2379:interface=127.0.0.1` |" in generated
    assert "| `--metrics-listen` | none |" in generated and "| `--client-cert-auth` | off |" in generated


def test_every_default_reads_back_as_itself() -> None:
    for opt in OPTIONS:
        if opt.default_shown is not None and not opt.spec.repeat:
            assert opt.read(opt.default_shown) == opt.default, opt.name


def test_help_shows_every_documented_option() -> None:
    usage = Options().getUsage(width=200)
    for row in table_rows("configuration.md"):
        assert re.search(rf"^\s+{re.escape(row[0].strip('`'))}=?\s", usage, re.MULTILINE), row[0]


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    served = set()
    supervisor = WorkerSupervisor(ServerConfig(), ProcessConfig(), [], MemoryReactor(), 2)
    for registry in (ServerMetrics("3.6.4").registry, supervisor.registry):
        for family in registry.collect():
            served.add(family.name + ("_total" if family.type == "counter" else ""))
    documented = {row[0].strip("`") for row in table_rows("metrics.md") if not row[0].startswith("`/")}
    assert {name for name in served if not name.startswith("process_")} == documented - {"process_*"}
    assert any(name.startswith("process_") for name in served) and "process_*" in documented


def test_relative_links_resolve() -> None:
    for document in sorted(DOCS.glob("*.md")) + [SOURCE_ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", document.read_text()):
            assert (document.parent / target).exists(), f"{document.name} links to {target}, which does not exist"
