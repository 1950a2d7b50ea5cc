"""The etcd API on a gRPC method registry: each service registered from etcd's descriptor.

Every etcd service class names the ``rpc.proto`` service it serves (``descriptor``) and has
one ``async def`` handler per method, named in snake_case.  Registration maps the store's
failures onto etcd's statuses, for every handler at once (``errors.translate``).
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.descriptor import ServiceDescriptor

from k8s_sql.etcd.errors import translate
from k8s_sql.grpc.interfaces import IMethodRegistry


class EtcdService(Protocol):
    """What ``register`` needs of a service: the descriptor of the service it implements."""

    descriptor: ServiceDescriptor


def register(registry: IMethodRegistry, *services: EtcdService) -> None:
    """Serve every method of each of ``services`` from ``registry``, store failures in etcd's words."""
    for service in services:
        registry.add_service(service.descriptor, service, translate)
