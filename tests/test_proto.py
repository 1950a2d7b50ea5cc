"""The committed protobuf modules match their ``.proto`` sources and etcd's wire numbers."""

from __future__ import annotations

import importlib
from pathlib import Path

from google.protobuf import descriptor_pb2

from k8s_sql.proto import generate, rpc_pb2


def strip_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Drop ``json_name``, which protoc derives for descriptor sets but not for Python modules."""
    pending = list(file.message_type)
    while pending:
        message = pending.pop()
        for field in message.field:
            field.ClearField("json_name")
        pending.extend(message.nested_type)


def test_generated_modules_are_current(tmp_path: Path) -> None:
    """Each ``*_pb2`` module holds exactly the descriptor protoc builds from its source today."""
    descriptor_set = tmp_path / "descriptors.pb"
    generate.protoc(f"--descriptor_set_out={descriptor_set}")
    fresh = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    assert len(fresh.file) == len(generate.PROTO_FILES)
    for source in fresh.file:
        strip_json_names(source)
        module = importlib.import_module(source.name.removesuffix(".proto").replace("/", ".") + "_pb2")
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert committed == source, f"{source.name} changed: run python -m k8s_sql.proto.generate"


def test_wire_numbers_match_etcd() -> None:
    """Spot checks of field numbers clients depend on, independent of the generator."""
    fields = rpc_pb2.RangeRequest.DESCRIPTOR.fields_by_name
    assert fields["max_create_revision"].number == 13
    assert rpc_pb2.Compare.DESCRIPTOR.fields_by_name["range_end"].number == 64
    assert rpc_pb2.WatchResponse.DESCRIPTOR.fields_by_name["events"].number == 11
    assert rpc_pb2.StatusResponse.DESCRIPTOR.fields_by_name["dbSizeQuota"].number == 12
    assert rpc_pb2.DESCRIPTOR.package == "etcdserverpb"
    assert rpc_pb2.DESCRIPTOR.services_by_name["KV"].methods_by_name["Txn"].full_name == "etcdserverpb.KV.Txn"
