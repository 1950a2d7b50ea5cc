from k8s_sql.proto import kv_pb2 as _kv_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Header(_message.Message):
    __slots__ = ("format", "revision", "compact_revision", "keys", "source", "producer")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    format: int
    revision: int
    compact_revision: int
    keys: int
    source: str
    producer: str
    def __init__(self, format: _Optional[int] = ..., revision: _Optional[int] = ..., compact_revision: _Optional[int] = ..., keys: _Optional[int] = ..., source: _Optional[str] = ..., producer: _Optional[str] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("id", "granted_ttl", "ttl")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_TTL_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    id: int
    granted_ttl: int
    ttl: int
    def __init__(self, id: _Optional[int] = ..., granted_ttl: _Optional[int] = ..., ttl: _Optional[int] = ...) -> None: ...

class Trailer(_message.Message):
    __slots__ = ("keys", "leases", "crc32")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    keys: int
    leases: int
    crc32: int
    def __init__(self, keys: _Optional[int] = ..., leases: _Optional[int] = ..., crc32: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("header", "lease", "kv", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: Header
    lease: Lease
    kv: _kv_pb2.KeyValue
    trailer: Trailer
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., kv: _Optional[_Union[_kv_pb2.KeyValue, _Mapping]] = ..., trailer: _Optional[_Union[Trailer, _Mapping]] = ...) -> None: ...
