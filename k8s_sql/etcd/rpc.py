"""What every etcd service shares: method registration and store calls reported in etcd's words."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message

from k8s_sql.etcd.errors import to_grpc_error
from k8s_sql.grpc.interfaces import IMethodRegistry
from k8s_sql.store.errors import StoreError

T = TypeVar("T")


def serialize(message: Message | bytes) -> bytes:
    """The wire form of a response: a message, or the bytes a handler encoded itself."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def register_unary(
    registry: IMethodRegistry,
    service: str,
    methods: Mapping[str, tuple[Callable[..., Any], type[Message]]],
) -> None:
    """Register unary handlers of one gRPC service, e.g. ``service="etcdserverpb.KV"``.

    ``methods`` maps a method name to its handler and request message type.
    """
    for name, (handler, request_type) in methods.items():
        registry.unary(f"/{service}/{name}", handler, request_type.FromString, serialize)


async def store_call(call: Awaitable[T]) -> T:
    """Await a store call, reporting store failures as etcd's errors."""
    try:
        return await call
    except StoreError as failure:
        raise to_grpc_error(failure) from None
