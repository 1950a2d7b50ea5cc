"""The standard gRPC health service, ``grpc.health.v1.Health``: Check and Watch."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import health_pb2
from k8s_sql.proto.health_pb2 import HealthCheckRequest, HealthCheckResponse

Status = HealthCheckResponse.ServingStatus


class HealthService:
    """Answers health checks: the server as a whole ("") is SERVING unless told otherwise."""

    #: The service served, registered with ``IMethodRegistry.add_service``.
    descriptor = health_pb2.DESCRIPTOR.services_by_name["Health"]

    def __init__(self) -> None:
        self._statuses: dict[str, Status] = {"": HealthCheckResponse.SERVING}
        self._watching: dict[str, list[Deferred[None]]] = {}

    def set_status(self, service: str, status: Status) -> None:
        """Report ``status`` for ``service`` ("" is the whole server); watchers are told."""
        self._statuses[service] = status
        for waiter in self._watching.pop(service, []):
            waiter.callback(None)

    def check(self, request: HealthCheckRequest, call: IServerCall) -> HealthCheckResponse:
        """Health/Check: the service's status; NOT_FOUND for a service never named."""
        status = self._statuses.get(request.service)
        if status is None:
            raise GRPCError(StatusCode.NOT_FOUND, "unknown service")
        return HealthCheckResponse(status=status)

    async def watch(self, request: HealthCheckRequest, call: IServerCall) -> None:
        """Health/Watch: the service's status now, then each change, until the client leaves.

        A service never named is reported SERVICE_UNKNOWN, without ending the call, as the
        health protocol asks.
        """
        sent: Status | None = None
        while True:
            status = self._statuses.get(request.service, HealthCheckResponse.SERVICE_UNKNOWN)
            if status != sent:
                await call.send(HealthCheckResponse(status=status))
                sent = status
            await self._changed(request.service)

    def _changed(self, service: str) -> Deferred[None]:
        waiting = self._watching.setdefault(service, [])
        changed: Deferred[None] = Deferred(waiting.remove)
        waiting.append(changed)
        return changed
