"""docs/migration.md kept in sync with the command line."""

from __future__ import annotations

import re

from k8s_sql.migrate.cli import Options
from tests.processes import SOURCE_ROOT

DOCUMENT = (SOURCE_ROOT / "docs" / "migration.md").read_text()
ENDPOINTS = {"--from", "--to", "--file"}


def commands() -> dict[str, object]:
    return {name: options() for name, _, options, _ in Options.subCommands}


def test_the_options_table_lists_every_option_of_every_command() -> None:
    documented: dict[str, set[str]] = {}
    for line in DOCUMENT.splitlines():
        if line.startswith("| `-"):
            names, used_by = line.strip("|").split(" | ")[:2]
            for name in re.findall(r"`(--[a-z-]+)", names):
                documented.setdefault(name, set()).update(part.strip() for part in used_by.split(","))
    offered: dict[str, set[str]] = {}
    for command, options in commands().items():
        for name in options.longOpt:  # type: ignore[attr-defined]
            name = "--" + name.rstrip("=")
            if name not in ENDPOINTS | {"--help", "--version"}:
                offered.setdefault(name, set()).add(command)
    every = set(commands())
    assert documented.keys() == offered.keys()
    for name, used in documented.items():
        assert used == ({"all"} if offered[name] == every else offered[name]), name


def test_the_synopsis_shows_each_command_as_its_help_does() -> None:
    for command, options in commands().items():
        assert re.search(rf"^k8s-sql-migrate {command} +{re.escape(options.synopsis).replace(' ', ' +')}$",  # type: ignore[attr-defined]
                         DOCUMENT, re.MULTILINE), command
