"""A grpcio client for the etcd API, with stubs built from our descriptors.

No ``_pb2_grpc`` module is committed: each service's methods are read from
``rpc_pb2.DESCRIPTOR``, so every RPC of the ``.proto`` is callable as
``client.KV.Range(request)`` or ``client.Watch.Watch(iterator)``.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory

from k8s_sql.proto import health_pb2, rpc_pb2


class Stub:
    """Callables for each method of one gRPC service."""

    def __init__(self, channel: grpc.Channel, service: Any) -> None:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            kind = {
                (False, False): channel.unary_unary,
                (False, True): channel.unary_stream,
                (True, False): channel.stream_unary,
                (True, True): channel.stream_stream,
            }[(method.client_streaming, method.server_streaming)]
            setattr(
                self,
                method.name,
                kind(path, request_serializer=request.SerializeToString, response_deserializer=response.FromString),
            )


class EtcdClient:
    """Stubs for KV, Watch, Lease, Cluster, Maintenance, Auth and Health on one channel."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None, **options: Any) -> None:
        channel_options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            *options.items(),
        ]
        if credentials is None:
            self.channel = grpc.insecure_channel(target, options=channel_options)
        else:
            self.channel = grpc.secure_channel(target, credentials, options=channel_options)
        for name, service in rpc_pb2.DESCRIPTOR.services_by_name.items():
            setattr(self, name, Stub(self.channel, service))
        self.Health = Stub(self.channel, health_pb2.DESCRIPTOR.services_by_name["Health"])

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> "EtcdClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
