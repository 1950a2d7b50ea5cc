"""gRPC statuses as etcd 3.5's gateway (grpc-gateway v1) writes them over HTTP.

An error before any response message is the whole response: the HTTP status that
``runtime.HTTPStatusFromCode`` maps the gRPC code to, and ``{"error", "code", "message"}``.
An error after a streamed response has begun is one more chunk of the stream,
``{"error": {"grpc_code", "http_code", "message", "http_status"}}``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from k8s_sql.grpc.status import StatusCode

#: grpc-gateway v1's ``runtime.HTTPStatusFromCode``.
HTTP_STATUS = {
    StatusCode.OK: 200,
    StatusCode.CANCELLED: 408,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.UNAUTHENTICATED: 401,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
}


def error_body(code: StatusCode, message: str) -> dict[str, Any]:
    """The body of an error response."""
    return _without_defaults({"error": message, "code": int(code), "message": message})


def stream_error(code: StatusCode, message: str) -> dict[str, Any]:
    """The chunk that ends a streamed response with an error."""
    http_code = HTTP_STATUS[code]
    return {
        "error": _without_defaults(
            {
                "grpc_code": int(code),
                "http_code": http_code,
                "message": message,
                "http_status": HTTPStatus(http_code).phrase,
            }
        )
    }


def _without_defaults(fields: dict[str, Any]) -> dict[str, Any]:
    """Leave out empty strings and zeros, as Go's jsonpb does without ``EmitDefaults``."""
    return {name: value for name, value in fields.items() if value}
