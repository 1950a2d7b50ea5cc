"""The etcd ``KV`` service: Range, Put, DeleteRange, Txn and Compact over an ``IStore``."""

from __future__ import annotations

from google.protobuf.message import Message

from k8s_sql.etcd import convert, encode
from k8s_sql.etcd.errors import REQUEST_TOO_LARGE
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.nesting import decode_txn_request
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.checks import DEFAULT_MAX_TXN_OPS
from k8s_sql.store.interfaces import IStore

#: etcd's default ``--max-request-bytes``: larger writes are refused with "request is too large".
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024


class KVService:
    """Serves ``etcdserverpb.KV`` from a store.

    @param store: where the keys live.
    @param identity: the cluster and member ids put in every response header.
    @param max_request_bytes: the largest write request accepted, as etcd's
        ``--max-request-bytes``.
    @param max_txn_ops: the store's ``--max-txn-ops``, which bounds how deep Txn requests
        are decoded (``k8s_sql.etcd.nesting``).
    """

    descriptor = rpc_pb2.DESCRIPTOR.services_by_name["KV"]

    def __init__(
        self,
        store: IStore,
        identity: Identity,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    ) -> None:
        self.store = store
        self.identity = identity
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops

    def decode_txn(self, data: bytes) -> rpc_pb2.TxnRequest:
        """A TxnRequest, nested as deep as etcd decodes it (``k8s_sql.etcd.nesting``)."""
        return decode_txn_request(data, self.max_txn_ops)

    def check_size(self, request: Message) -> None:
        """Refuse a write larger than ``max_request_bytes``, as etcd does before proposing it."""
        if request.ByteSize() > self.max_request_bytes:
            raise REQUEST_TOO_LARGE.exception()

    async def range(self, request: rpc_pb2.RangeRequest, call: IServerCall) -> bytes:
        """Read keys, at the current or a past revision; answers with the encoded
        RangeResponse (``k8s_sql.etcd.encode``), written without building a message per key."""
        result = await self.store.range(convert.range_request(request))
        return encode.range_response(result, self.identity)

    async def put(self, request: rpc_pb2.PutRequest, call: IServerCall) -> rpc_pb2.PutResponse:
        """Write one key."""
        self.check_size(request)
        result = await self.store.put(convert.put_request(request))
        return convert.put_response(result, self.identity)

    async def delete_range(self, request: rpc_pb2.DeleteRangeRequest, call: IServerCall) -> rpc_pb2.DeleteRangeResponse:
        """Delete a key or a range of keys."""
        self.check_size(request)
        result = await self.store.delete_range(convert.delete_range_request(request))
        return convert.delete_range_response(result, self.identity)

    async def txn(self, request: rpc_pb2.TxnRequest, call: IServerCall) -> rpc_pb2.TxnResponse:
        """Run a guarded transaction."""
        self.check_size(request)
        result = await self.store.txn(convert.txn_request(request))
        return convert.txn_response(result, self.identity)

    async def compact(self, request: rpc_pb2.CompactionRequest, call: IServerCall) -> rpc_pb2.CompactionResponse:
        """Discard history up to a revision."""
        revision = await self.store.compact(request.revision, request.physical)
        return rpc_pb2.CompactionResponse(header=self.identity.header(revision))
