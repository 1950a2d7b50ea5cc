"""The supervisord and systemd examples in contrib/: they parse, and every option they pass
is a real option of the command, with a value it accepts."""

from __future__ import annotations

import configparser
import re
import shlex

from twisted.internet.testing import MemoryReactor

from k8s_sql.tap import Options
from tests.grpc.support import Certificates
from tests.processes import SOURCE_ROOT

CONTRIB = SOURCE_ROOT / "contrib"


def command_options(argv: list[str], certificates: Certificates) -> Options:
    """Parse ``argv`` (a k8s-sql command line) as the command would, with test TLS files."""
    assert argv[0].endswith("/k8s-sql"), argv
    files = {"/etc/k8s-sql/server.pem": "server.pem", "/etc/k8s-sql/server-key.pem": "server.key",
             "/etc/k8s-sql/ca.pem": "ca.pem"}
    arguments = [certificates.path(files[argument]) if argument in files else argument for argument in argv[1:]]
    options = Options(reactor=MemoryReactor())
    options.parseOptions(arguments)
    return options


def test_supervisord_program(certificates: Certificates) -> None:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    assert parser.read(CONTRIB / "supervisord" / "k8s-sql.conf")
    program = parser["program:k8s-sql"]
    command = program["command"]
    # supervisord's own expansions, as it would fill them in.
    command = command.replace("%(host_node_name)s", "node-1").replace("%(ENV_K8S_SQL_DB_PASSWORD)s", "secret")
    assert "%(" not in command
    options = command_options(shlex.split(command), certificates)
    assert options["name"] == "node-1"
    assert options["endpoint"] == "mysql://k8s:secret@db.internal:3306/k8s"
    assert options["client-cert-auth"] and options["metrics-listen"] == ["tcp:2381:interface=127.0.0.1"]
    assert program["stopsignal"] == "TERM"
    assert int(program["stopwaitsecs"]) > options["shutdown-grace"]
    assert program["autorestart"] == "true" and program["redirect_stderr"] == "true"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: sections of settings (a setting may repeat), continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical, line = "", logical + line
        header = re.fullmatch(r"\[(\w+)\]", line.strip())
        if header:
            section = sections.setdefault(header.group(1), {})
            continue
        key, equals, value = line.partition("=")
        assert equals and section is not None, f"not a setting: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    assert not logical, "the file ends inside a continued line"
    return sections


def test_systemd_unit(certificates: Certificates) -> None:
    unit = parse_unit((CONTRIB / "systemd" / "k8s-sql.service").read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    environment = dict(setting.split("=", 1) for setting in service["Environment"])
    (exec_start,) = service["ExecStart"]
    # systemd's expansions: %H is the host name, ${NAME} an environment variable as one word.
    argv = [re.sub(r"\$\{(\w+)\}", lambda match: environment[match.group(1)], word.replace("%H", "node-1"))
            for word in shlex.split(exec_start)]
    options = command_options(argv, certificates)
    assert options["name"] == "node-1"
    assert options["endpoint"] == "sqlite:////var/lib/k8s-sql/state.db"
    assert options["listen"] == ["tcp:2379:interface=0.0.0.0"] and options["client-cert-auth"]
    assert service["Type"] == ["simple"] and service["KillSignal"] == ["SIGTERM"]
    assert int(service["TimeoutStopSec"][0]) > options["shutdown-grace"]
    assert service["Restart"] == ["on-failure"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_parser_reads_what_systemd_reads() -> None:
    unit = parse_unit("[Service]\n# a comment\nExecStart=/bin/k8s-sql \\\n    --name a \\\n    --log-format json\n"
                      "Environment=A=1\nEnvironment=B=2\n")
    assert unit == {"Service": {"ExecStart": ["/bin/k8s-sql      --name a      --log-format json"],
                                "Environment": ["A=1", "B=2"]}}
