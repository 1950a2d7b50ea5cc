"""Conversions between the store's records and etcd's ``mvccpb`` messages."""

from __future__ import annotations

from k8s_sql.proto import kv_pb2
from k8s_sql.store.model import Event, KeyValue


def kv_message(kv: KeyValue) -> kv_pb2.KeyValue:
    """The ``mvccpb.KeyValue`` for a stored key version."""
    return kv_pb2.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def event_message(event: Event) -> kv_pb2.Event:
    """The ``mvccpb.Event`` for a change; ``prev_kv`` is included when the store has it."""
    message = kv_pb2.Event(type=int(event.type), kv=kv_message(event.kv))
    if event.prev_kv is not None:
        message.prev_kv.CopyFrom(kv_message(event.prev_kv))
    return message
