"""The revision log's vocabulary: records, requests and results, free of protobuf.

These mirror etcd's KV messages closely so that ``k8s_sql.etcd`` converts them one to one,
but they carry no header: the revision a response reports is a plain field here, and the
etcd layer adds cluster and member ids.  All instances are immutable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of one key, as etcd's ``mvccpb.KeyValue``."""

    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


class EventType(IntEnum):
    """The kind of a change, numbered as etcd's ``mvccpb.Event.EventType``."""

    PUT = 0
    DELETE = 1


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one key.

    For a DELETE, ``kv`` holds only ``key`` and ``mod_revision`` (the deleting revision), as in etcd.
    ``prev_kv`` is the key's previous version, or ``None`` when the key did not exist before.
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


class SortOrder(IntEnum):
    """Order of a range's results (etcd ``RangeRequest.SortOrder``).

    etcd takes any other value without complaint (``SortOrder(7)`` is ``UNKNOWN``): it
    does not sort, but, as for any order but ``NONE``, reads the whole range before
    cutting it to the limit.
    """

    NONE = 0
    ASCEND = 1
    DESCEND = 2
    UNKNOWN = -1

    @classmethod
    def _missing_(cls, value: object) -> SortOrder | None:
        return cls.UNKNOWN if isinstance(value, int) else None


class SortTarget(IntEnum):
    """Field a range's results are sorted by (etcd ``RangeRequest.SortTarget``)."""

    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(IntEnum):
    """Relation a compare checks (etcd ``Compare.CompareResult``)."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(IntEnum):
    """Field a compare inspects (etcd ``Compare.CompareTarget``)."""

    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class AlarmType(IntEnum):
    """A kind of alarm, numbered as etcd's ``AlarmType``."""

    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """Read keys in ``[key, range_end)`` (one key when ``range_end`` is empty), as etcd's Range."""

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(frozen=True, slots=True)
class PutRequest:
    """Write one key, as etcd's Put."""

    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    """Delete keys in ``[key, range_end)``, as etcd's DeleteRange."""

    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Compare:
    """One guard of a transaction.

    ``operand`` is an ``int`` for VERSION, CREATE, MOD and LEASE targets and ``bytes`` for VALUE.
    """

    target: CompareTarget
    result: CompareResult
    key: bytes
    operand: int | bytes = 0
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class TxnRequest:
    """A guarded, atomic batch of operations, as etcd's Txn (nesting allowed)."""

    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()


RequestOp = RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest


@dataclass(frozen=True, slots=True)
class RangeResponse:
    """Result of a range; ``revision`` is the header revision etcd would report."""

    revision: int
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0


@dataclass(frozen=True, slots=True)
class PutResponse:
    """Result of a put."""

    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    """Result of a delete."""

    revision: int
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """Result of a transaction: one response per executed operation, in order."""

    revision: int
    succeeded: bool = False
    responses: tuple[ResponseOp, ...] = field(default_factory=tuple)


ResponseOp = RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as stored: ``deadline`` is in seconds on the store's clock."""

    id: int
    granted_ttl: int
    deadline: float


@dataclass(frozen=True, slots=True)
class LeaseTimeToLive:
    """What LeaseTimeToLive reports: ``ttl`` is -1 for an unknown or expired lease."""

    id: int
    ttl: int
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class KVHash:
    """A hash of the key space as of ``revision``, as etcd's HashKV computes it.

    ``compact_revision`` is the last compaction (-1 when never compacted, as etcd reports
    it) and ``current_revision`` the newest revision when the hash was taken.
    """

    hash: int
    revision: int
    compact_revision: int
    current_revision: int


@dataclass(frozen=True, slots=True)
class DatabaseSize:
    """How much space the store's tables take in bytes, and how much of it holds live data."""

    total: int
    in_use: int


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm raised for a member, as etcd's ``AlarmMember``."""

    member_id: int
    alarm: AlarmType


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One server process running on the database: its row of the member registry.

    ``instance`` names this run of the process (random, new at each start).  Processes
    with one ``name`` are one etcd member, ``member_id`` (a server's worker processes,
    or the runs of one server).  ``host``, ``pid_space`` and ``pid`` say where the process
    runs: ``pid_space`` names the process-ID namespace (of one boot of one machine) that
    ``pid`` means something in, or is empty when unknown.  ``deadline`` is when the row
    expires unless the process beats again, in seconds on the servers' clocks.
    """

    instance: int
    name: str
    member_id: int
    client_urls: tuple[str, ...] = ()
    peer_urls: tuple[str, ...] = ()
    host: str = ""
    pid_space: str = ""
    pid: int = 0
    deadline: float = 0.0

    def same_server(self, other: MemberRecord) -> bool:
        """Whether ``other`` is a process of the same server: same name, same pid space
        (known) and the same client URLs, as worker processes sharing a port have."""
        return (
            self.name == other.name
            and bool(self.pid_space)
            and self.pid_space == other.pid_space
            and self.client_urls == other.client_urls
        )
