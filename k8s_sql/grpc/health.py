"""The standard gRPC health service, ``grpc.health.v1.Health/Check``."""

from __future__ import annotations

from k8s_sql.grpc.interfaces import IMethodRegistry, IServerCall
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto.health_pb2 import HealthCheckRequest, HealthCheckResponse

CHECK = "/grpc.health.v1.Health/Check"


class HealthService:
    """Answers health checks: the server as a whole ("") is SERVING unless told otherwise."""

    def __init__(self) -> None:
        self._statuses: dict[str, HealthCheckResponse.ServingStatus] = {"": HealthCheckResponse.SERVING}

    def set_status(self, service: str, status: HealthCheckResponse.ServingStatus) -> None:
        """Report ``status`` for ``service`` ("" is the whole server)."""
        self._statuses[service] = status

    def check(self, request: HealthCheckRequest, call: IServerCall) -> HealthCheckResponse:
        """Health/Check: the service's status; NOT_FOUND for a service never named."""
        status = self._statuses.get(request.service)
        if status is None:
            raise GRPCError(StatusCode.NOT_FOUND, "unknown service")
        return HealthCheckResponse(status=status)

    def register(self, registry: IMethodRegistry) -> None:
        """Serve Health/Check from ``registry``."""
        registry.unary(CHECK, self.check, HealthCheckRequest.FromString, HealthCheckResponse.SerializeToString)
