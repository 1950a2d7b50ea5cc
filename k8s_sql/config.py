"""What the server is configured with: one table of options, and the check of a configuration.

``ServerConfig`` holds everything a server is told, one field per command-line option
(``k8s_sql.options``: the field declares the option's default, how its text is read, its
``--help`` line and its documentation).  ``ProcessConfig`` holds what only the command
line's process uses.  ``plan_server`` checks a configuration without touching the network
or the database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from k8s_sql.cluster.endpoints import PeerTLS, check_peer_url
from k8s_sql.cluster.registry import DEFAULT_TIMEOUT as DEFAULT_MEMBER_TIMEOUT
from k8s_sql.durations import format_duration, parse_duration, positive_duration
from k8s_sql.etcd.kv import DEFAULT_MAX_REQUEST_BYTES
from k8s_sql.etcd.lease import DEFAULT_MIN_TTL
from k8s_sql.etcd.watch import DEFAULT_PROGRESS_INTERVAL
from k8s_sql.grpc.protocol import KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MAX_STREAMS, WRITE_STALL_TIMEOUT
from k8s_sql.grpc.tls import TLSConfigurationError, TLSEndpointParser, server_endpoint
from k8s_sql.housekeeping.compactor import MODES as COMPACTION_MODES
from k8s_sql.housekeeping.compactor import Retention, retention_policy
from k8s_sql.housekeeping.sweeper import DEFAULT_INTERVAL as DEFAULT_SWEEP_INTERVAL
from k8s_sql.logs import LOG_FORMATS, LOG_LEVELS
from k8s_sql.options import option
from k8s_sql.store.checks import DEFAULT_MAX_TXN_OPS
from k8s_sql.store.compaction import DEFAULT_BATCH as DEFAULT_COMPACTION_BATCH
from k8s_sql.store.pool import load_dialect
from k8s_sql.store.signals import DEFAULT_POLL_INTERVAL
from k8s_sql.store.url import DatabaseURL

T = TypeVar("T")

DEFAULT_LISTEN = "tcp:2379:interface=127.0.0.1"
DEFAULT_ENDPOINT = "sqlite:///k8s-sql.db"
#: The etcd version reported by default: kube-apiserver enables features by it.
DEFAULT_ETCD_VERSION = "3.6.15"
#: The schemes of advertised client URLs, as etcd accepts them.
CLIENT_URL_SCHEMES = ("http", "https", "unix", "unixs")


def positive_int(text: str) -> int:
    """A whole number greater than zero."""
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError(f"{text!r} is not a whole number greater than zero")
    return int(text)


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """A reader of whole numbers from ``low`` to ``high``."""

    def read(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise ValueError(f"{text!r} is not a whole number from {low} to {high}")
        return int(text)

    return read


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """A reader accepting only ``choices``."""

    def choose(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return choose


def _duration(**spec: Any) -> dict[str, Any]:
    """What a duration option has in common: seconds read and shown as Go durations."""
    return {"parse": parse_duration, "show": format_duration, **spec}


@dataclass
class ServerConfig:
    """Everything the server is configured with; the command line fills one of these.

    Durations are in seconds.  Each field is an option of the command line (dashes for
    underscores); see docs/configuration.md.
    """

    listen: list[str] = option(
        factory=lambda: [DEFAULT_LISTEN],
        repeat=True,
        help="Serve the etcd API on this Twisted endpoint description; repeatable.",
        doc="Serve the etcd API on this endpoint description: gRPC, and etcd's JSON gateway, `/version` and the "
        "health and metrics pages over HTTP/1.1 ([gateway](gateway.md)). Repeatable: every one serves the same "
        "API. Listen on `tcp:2379:interface=0.0.0.0` to take connections from other hosts.",
    )
    endpoint: str = option(
        DEFAULT_ENDPOINT,
        help="Database URL: sqlite:///relative/path, sqlite:////absolute/path, "
        "mysql://user:password@host:port/database or postgres://user:password@host:port/database, "
        "with ?option=value tuning (docs/backends.md).",
        doc="The database URL: `sqlite:///relative/path`, `sqlite:////absolute/path`, "
        "`mysql://user:password@host:port/database`, `postgres://user:password@host:port/database`. "
        "Query-string options (`?writers=8&readers=8&connect_timeout=5`) are described in "
        "[backends](backends.md). The password never appears in logs or errors.",
    )
    name: str = option(
        "default",
        help="This member's name, as etcd's --name; the member ID is derived from it.",
        doc="This member's name, as etcd's `--name`. The member ID in every response header is derived from "
        "it and the database's cluster ID, so give each server sharing a database its own name.",
    )
    cert_file: str | None = option(
        None,
        help="TLS on every --listen endpoint: the server certificate (PEM, intermediates after it), "
        "as etcd's --cert-file.",
        doc="TLS on every `--listen` endpoint: the server certificate, PEM, intermediate certificates after it "
        "(etcd's `--cert-file`). ALPN offers `http/1.1` (the gateway) and `h2` (gRPC); TLS 1.2 is the minimum.",
    )
    key_file: str | None = option(
        None,
        help="The server certificate's private key (PEM, unencrypted), as etcd's --key-file.",
        doc="The certificate's private key, PEM, unencrypted (etcd's `--key-file`).",
    )
    trusted_ca_file: str | None = option(
        None,
        help="CA certificates (PEM) that client certificates are verified against, as etcd's --trusted-ca-file.",
        doc="CA certificates, PEM, that client certificates are verified against when a client presents one "
        "(etcd's `--trusted-ca-file`).",
    )
    client_cert_auth: bool = option(
        False,
        flag=True,
        help="Refuse clients without a certificate signed by --trusted-ca-file, as etcd's --client-cert-auth.",
        doc="Require a client certificate signed by `--trusted-ca-file`; clients without one fail the TLS "
        "handshake (etcd's `--client-cert-auth`).",
    )
    metrics_listen: list[str] = option(
        factory=list,
        repeat=True,
        help="Serve /metrics, /health, /readyz and /livez on this endpoint description; repeatable.",
        doc="Serve `/metrics`, `/health`, `/readyz` and `/livez` over HTTP on this endpoint description (e.g. "
        "`tcp:2381:interface=127.0.0.1`); repeatable. Plain HTTP: bind it to a private address, or use "
        "Twisted's `ssl:` description. See [metrics](metrics.md).",
    )
    advertise_client_urls: list[str] = option(
        factory=list,
        repeat=True,
        split=True,
        help="Client URLs to advertise, comma-separated, as etcd's; repeatable.",
        doc="This member's client URLs, comma-separated, as etcd's `--advertise-client-urls`; repeatable. "
        "`MemberList` reports them. Behind a load balancer, advertise the balancer's URL.",
        default_text="the `--listen` ports' URLs",
    )
    member_timeout: float = option(
        DEFAULT_MEMBER_TIMEOUT,
        **_duration(
            parse=positive_duration,
            help="How long after its last heartbeat a server drops out of the member list; it beats every fifth "
            "of this.",
            doc="How long after its last heartbeat a server drops out of the member list (`MemberList`, `etcdctl "
            "member list`) and its peers stop signalling it. A server beats every fifth of this and leaves the list "
            "at once when it stops cleanly. Keep the clocks of servers sharing a database in step (NTP), as for "
            "leases. See [high availability](ha.md#the-member-registry).",
        ),
    )
    peer_listen: str | None = option(
        None,
        help="Take commit signals from the other servers sharing the database on this endpoint description "
        "(e.g. tcp:2380:interface=10.0.0.1); their writes then reach this server's watches at once.",
        doc="Take commit signals from the other servers sharing the database on this endpoint description, e.g. "
        "`tcp:2380:interface=10.0.0.1`, or `tcp:0:interface=127.0.0.1` or `unix:/run/k8s-sql/a.sock` for servers "
        "on one host: their writes then reach this server's watches at once instead of at the next poll. Unset, "
        "this server has no peer port (it still signals the peers that have one). See "
        "[high availability](ha.md#the-peer-channel).",
        default_text="none",
    )
    advertise_peer_urls: list[str] = option(
        factory=list,
        repeat=True,
        split=True,
        help="Where the other servers reach --peer-listen, comma-separated; repeatable.",
        doc="Where the other servers reach `--peer-listen`, comma-separated: `http://host:port`, "
        "`https://host:port` (peer TLS) or `unix:///path`, as etcd's `--initial-advertise-peer-urls`; repeatable. "
        "Needed when `--peer-listen` listens on every address. `MemberList` reports them as peer URLs.",
        default_text="the `--peer-listen` port's URL",
    )
    peer_cert_file: str | None = option(
        None,
        help="TLS on --peer-listen, and the certificate shown to peers asking for one (PEM), as etcd's "
        "--peer-cert-file.",
        doc="TLS on `--peer-listen`: its certificate, PEM, intermediates after it; also the client certificate "
        "this server shows the peers it connects to (etcd's `--peer-cert-file`). Give it both server and client "
        "use when peers require client certificates.",
    )
    peer_key_file: str | None = option(
        None,
        help="The peer certificate's private key (PEM, unencrypted), as etcd's --peer-key-file.",
        doc="The peer certificate's private key, PEM, unencrypted (etcd's `--peer-key-file`).",
    )
    peer_trusted_ca_file: str | None = option(
        None,
        help="CA certificates (PEM) that peers' certificates are verified against, as etcd's --peer-trusted-ca-file.",
        doc="CA certificates, PEM, that the certificates of `https` peers (and of peers presenting a client "
        "certificate) are verified against (etcd's `--peer-trusted-ca-file`); without it, the system's CAs "
        "verify `https` peers.",
    )
    peer_client_cert_auth: bool = option(
        False,
        flag=True,
        help="Refuse peers without a certificate signed by --peer-trusted-ca-file, as etcd's --peer-client-cert-auth.",
        doc="Require peers connecting to `--peer-listen` to present a certificate signed by "
        "`--peer-trusted-ca-file` (etcd's `--peer-client-cert-auth`).",
    )
    emulated_etcd_version: str = option(
        DEFAULT_ETCD_VERSION,
        help="The etcd version reported to clients; kube-apiserver enables features by it.",
        doc="The etcd version reported by `Maintenance.Status` and the `etcd_server_version` metric. "
        "kube-apiserver enables features by it (watch progress requests need ≥ 3.5.13); keep a current 3.6.x "
        "unless a client needs otherwise.",
    )
    auto_compaction_mode: str = option(
        "periodic",
        parse=one_of(COMPACTION_MODES),
        help="periodic or revision, as etcd's --auto-compaction-mode.",
        doc="`periodic` or `revision`, as etcd's `--auto-compaction-mode`.",
    )
    auto_compaction_retention: str = option(
        "0",
        help="As etcd's --auto-compaction-retention: periodic: history to keep, a duration (30m, 1h) "
        "or a whole number of hours; revision: revisions to keep; 0 turns auto-compaction off.",
        doc="As etcd's `--auto-compaction-retention`. `periodic`: how much history to keep, a duration "
        "(`30m`, `1h`) or a whole number of hours; `revision`: how many revisions to keep. `0` turns "
        "auto-compaction off, the right choice under Kubernetes, which compacts by itself. See "
        "[operations](operations.md#compaction).",
    )
    compaction_batch: int = option(
        DEFAULT_COMPACTION_BATCH,
        parse=positive_int,
        help="Revisions of the log each short physical compaction transaction examines.",
        doc="Revisions of the log that one physical compaction transaction examines. Smaller batches hold the "
        "database for less time each.",
    )
    max_txn_ops: int = option(
        DEFAULT_MAX_TXN_OPS,
        parse=positive_int,
        help="The most operations in one branch of a transaction, as etcd's --max-txn-ops.",
    )
    max_request_bytes: int = option(
        DEFAULT_MAX_REQUEST_BYTES,
        parse=positive_int,
        help="The largest write request accepted, as etcd's --max-request-bytes.",
        doc="The largest request accepted, as etcd's `--max-request-bytes` (1.5 MiB); gRPC accepts messages up "
        "to this plus 512 KiB, as etcd. Check what your database accepts before raising it "
        "([backends](backends.md)).",
    )
    poll_interval: float = option(
        DEFAULT_POLL_INTERVAL,
        **_duration(
            help="How often to look for writes made by other servers sharing the database; 0: never "
            "(one server alone, or PostgreSQL, whose LISTEN/NOTIFY pushes them).",
            doc="How often to look for writes made by other servers sharing the database (watch events from "
            "those writes arrive at most this late). `0`: never; right for a single server, and for PostgreSQL, "
            "whose LISTEN/NOTIFY pushes other servers' commits. See [watch](watch.md).",
        ),
    )
    progress_notify_interval: float = option(
        DEFAULT_PROGRESS_INTERVAL,
        **_duration(
            parse=positive_duration,
            help="How often watches that asked for progress notifications get one, as etcd's "
            "--experimental-watch-progress-notify-interval.",
            doc="How often watches that asked for progress notifications get one when idle, as etcd's "
            "`--experimental-watch-progress-notify-interval`.",
        ),
    )
    lease_min_ttl: int = option(
        DEFAULT_MIN_TTL,
        parse=positive_int,
        help="The shortest lease TTL granted, in seconds.",
        doc="The shortest lease TTL granted, in seconds; shorter requests are raised to it (etcd: 2 s). See "
        "[leases](leases.md).",
    )
    lease_sweep_interval: float = option(
        DEFAULT_SWEEP_INTERVAL,
        **_duration(
            parse=positive_duration,
            help="How often expired leases are revoked.",
            doc="How often expired leases are revoked (etcd checks every 500 ms).",
        ),
    )
    slow_sql_threshold: float = option(
        1.0,
        **_duration(
            help="Log database transactions that take at least this long; 0: never.",
            doc="Log, as a warning, every database transaction that takes at least this long from the call to "
            "its outcome (waiting for a connection and retries included). `0`: never.",
        ),
    )
    grpc_keepalive_interval: float = option(
        KEEPALIVE_INTERVAL,
        **_duration(
            help="PING a client not heard from for this long, as etcd's --grpc-keepalive-interval; 0: never.",
            doc="PING a client that has sent nothing for this long, as etcd's `--grpc-keepalive-interval`; `0`: "
            "never. With `--grpc-keepalive-timeout` it finds clients that vanished without closing their "
            "connection (a crashed host, a dropped NAT entry) and frees their watches. Lower it (e.g. `5m`) "
            "behind load balancers or firewalls that forget idle connections.",
        ),
    )
    grpc_keepalive_timeout: float = option(
        KEEPALIVE_TIMEOUT,
        **_duration(
            parse=positive_duration,
            help="Close the connection of a PINGed client that stays silent this long, as etcd's "
            "--grpc-keepalive-timeout.",
            doc="Close the connection of a PINGed client that sends nothing (not even the PING's acknowledgement, "
            "which every HTTP/2 client sends) for this long, as etcd's `--grpc-keepalive-timeout`.",
        ),
    )
    max_concurrent_streams: int = option(
        MAX_STREAMS,
        parse=whole_number(1, MAX_STREAMS),
        help="The most calls a client may have in progress on one connection, as etcd's --max-concurrent-streams; "
        "more are refused.",
        doc="The most calls (HTTP/2 streams) a client may have in progress on one connection, as etcd's "
        "`--max-concurrent-streams` (and its default, 2³²-1: kube-apiserver carries all its calls and watches on "
        "one connection). The server advertises it, and refuses a stream over it with `REFUSED_STREAM`, which "
        "clients retry. Memory per connection grows with its streams: lower it to bound that. See "
        "[reliability](reliability.md#http2-abuse).",
    )
    max_connections: int = option(
        0,
        parse=whole_number(0, 2**31 - 1),
        help="The most connections each --listen endpoint serves at once; more are closed as they arrive. 0: no limit.",
        doc="The most connections each `--listen` endpoint serves at once (HTTP/2 and HTTP/1.1 alike); one "
        "more is closed as soon as it is accepted, and a warning is logged at most every 10 s. `0`: no limit, as "
        "etcd. Set it below the process's open-file limit (`ulimit -n`, systemd's `LimitNOFILE`) less what the "
        "database connections need, so that a client opening connections without end cannot starve the "
        "database of descriptors. With `--workers`, each worker process applies it to the connections it "
        "serves.",
    )
    write_stall_timeout: float = option(
        WRITE_STALL_TIMEOUT,
        **_duration(
            help="Drop a connection that could send no response data this long while some waits for the client; "
            "0: never.",
            doc="Drop a connection on which responses have waited this long with nothing sent: the client keeps "
            "its flow-control window closed, or does not read at all. What waits is bounded per call (see "
            "[gRPC](grpc.md)), and this bounds how long it is held. `0`: never.",
        ),
    )
    shutdown_grace: float = option(
        5.0,
        **_duration(
            parse=positive_duration,
            help="How long calls in flight may take to finish when the server stops.",
            doc="On SIGTERM, how long calls in flight (watches included) may take to finish after GOAWAY before "
            "they end `UNAVAILABLE`.",
        ),
    )


def worker_count(text: str) -> int:
    """``auto`` (one per core this process may run on) or a whole number greater than zero."""
    if text.strip() == "auto":
        return len(os.sched_getaffinity(0))
    return positive_int(text)


@dataclass
class ProcessConfig:
    """What the command line's process uses beyond the server: its worker processes and logs."""

    workers: int = option(
        1,
        parse=worker_count,
        help="Worker processes serving the etcd API, each a complete server on the database; auto: one per core.",
        doc="How many worker processes serve the etcd API; `auto`: one per core. With more than one, this "
        "process supervises them: it accepts the connections of every `--listen` endpoint and hands them to the "
        "workers in turn, serves `--metrics-listen` for all of them, and restarts a worker that dies. See "
        "[workers](workers.md).",
    )

    log_format: str = option(
        "text",
        parse=one_of(LOG_FORMATS),
        help=f"Log lines as {' or '.join(LOG_FORMATS)}.",
        doc="`text` (Twisted's: `2024-05-01T12:00:00+0000 [namespace#level] message`) or `json` (one object per "
        "line: `ts`, `level`, `logger`, `msg` and the event's fields).",
    )
    log_level: str = option(
        "info",
        parse=one_of(LOG_LEVELS),
        help=f"The least severe log level written: {', '.join(LOG_LEVELS)}.",
        doc="The least severe level written: `debug`, `info`, `warn`, `error`, `critical`.",
    )


class ConfigurationError(ValueError):
    """The configuration cannot work; the message says why, in one line."""


@dataclass(frozen=True)
class ServerPlan:
    """A checked configuration: the endpoints to listen on and the compaction policy."""

    #: (description, endpoint) for the etcd API.
    grpc: list[tuple[str, IStreamServerEndpoint]]
    #: (description, endpoint) for the metrics site.
    metrics: list[tuple[str, IStreamServerEndpoint]]
    #: The auto-compaction policy, or ``None`` when it is off.
    compaction: Retention | None
    #: (description, endpoint) taking commit signals from peers, or ``None``.
    peer: tuple[str, IStreamServerEndpoint] | None = None
    #: What connections to peers trust and present.
    peer_tls: PeerTLS = field(default_factory=PeerTLS)

    def tls(self, description: str, config: ServerConfig) -> bool:
        """Whether the etcd API endpoint ``description`` serves TLS."""
        return config.cert_file is not None or description.startswith(TLSEndpointParser.prefix + ":")

    def peer_serves_tls(self, config: ServerConfig) -> bool:
        """Whether the peer port serves TLS."""
        return self.peer is not None and (
            config.peer_cert_file is not None or self.peer[0].startswith(TLSEndpointParser.prefix + ":")
        )


def plan_server(config: ServerConfig, reactor: Any) -> ServerPlan:
    """Check ``config`` without touching the network or the database.

    Raises ``ConfigurationError`` for a bad database URL (or a missing driver), a bad
    endpoint description, unusable TLS files or options, a bad version or client URL, or
    a bad compaction policy.
    """
    if not config.listen:
        raise ConfigurationError("nothing to listen on: give at least one listen endpoint")
    try:
        load_dialect(DatabaseURL.parse(config.endpoint))
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    if not re.fullmatch(r"\d+\.\d+\.\d+", config.emulated_etcd_version):
        raise ConfigurationError(
            f"the emulated etcd version must look like 3.6.4, not {config.emulated_etcd_version!r}"
        )
    for url in config.advertise_client_urls:
        _check_client_url(url)
    try:
        compaction = retention_policy(config.auto_compaction_mode, config.auto_compaction_retention)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    tls = config.cert_file is not None or config.key_file is not None
    grpc = []
    for description in config.listen:
        if tls and description.startswith(TLSEndpointParser.prefix + ":"):
            raise ConfigurationError(
                f"{description!r} has TLS of its own: do not combine h2tls: with a certificate file"
            )
        endpoint = _endpoint(
            description,
            server_endpoint,
            reactor,
            description,
            cert_file=config.cert_file,
            key_file=config.key_file,
            trusted_ca_file=config.trusted_ca_file,
            client_cert_auth=config.client_cert_auth,
        )
        grpc.append((description, endpoint))
    metrics = [
        (description, _endpoint(description, serverFromString, reactor, description))
        for description in config.metrics_listen
    ]
    return ServerPlan(grpc, metrics, compaction, *_plan_peers(config, reactor))


def _plan_peers(config: ServerConfig, reactor: Any) -> tuple[tuple[str, IStreamServerEndpoint] | None, PeerTLS]:
    """The peer port's endpoint, if any, and the TLS of connections to peers."""
    for url in config.advertise_peer_urls:
        try:
            check_peer_url(url)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
    tls = _built(PeerTLS.from_files, config.peer_cert_file, config.peer_key_file, config.peer_trusted_ca_file)
    description = config.peer_listen
    if description is None:
        if config.advertise_peer_urls or config.peer_client_cert_auth:
            raise ConfigurationError("--advertise-peer-urls and --peer-client-cert-auth need --peer-listen")
        return None, tls
    if config.peer_cert_file is not None and description.startswith(TLSEndpointParser.prefix + ":"):
        raise ConfigurationError(f"{description!r} has TLS of its own: do not combine h2tls: with --peer-cert-file")
    endpoint = _endpoint(
        description,
        server_endpoint,
        reactor,
        description,
        cert_file=config.peer_cert_file,
        key_file=config.peer_key_file,
        trusted_ca_file=config.peer_trusted_ca_file,
        client_cert_auth=config.peer_client_cert_auth,
    )
    return (description, endpoint), tls


def _endpoint(
    description: str, build: Callable[..., IStreamServerEndpoint], *args: Any, **kwargs: Any
) -> IStreamServerEndpoint:
    """``build(*args, **kwargs)``, its failures turned into one-line ``ConfigurationError``s."""
    return _built(build, *args, what=f"bad endpoint description {description!r}", **kwargs)


def _built(build: Callable[..., T], *args: Any, what: str = "bad TLS options", **kwargs: Any) -> T:
    """``build(*args, **kwargs)``, its failures turned into one-line ``ConfigurationError``s."""
    try:
        return build(*args, **kwargs)
    except TLSConfigurationError as error:
        raise ConfigurationError(f"TLS: {error}") from None
    except OSError as error:
        raise ConfigurationError(f"cannot read TLS file {error.filename}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"{what}: {error}") from None


def _check_client_url(url: str) -> None:
    """Refuse a client URL etcd would refuse: http(s)://host:port, or unix(s)://path."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as error:
        raise ConfigurationError(f"bad client URL {url!r}: {error}") from None
    if parts.scheme not in CLIENT_URL_SCHEMES or not parts.netloc or (parts.scheme.startswith("http") and port is None):
        raise ConfigurationError(f"bad client URL {url!r}: use http://host:port or https://host:port")
