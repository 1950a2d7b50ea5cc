"""Driving the client port's HTTP/1.1 site in memory: raw requests in, parsed responses out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from k8s_sql.gateway.site import Gateway, client_site
from k8s_sql.grpc.interfaces import IMethodRegistry

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)


@dataclass
class Response:
    """One HTTP/1.1 response, parsed."""

    status: int
    headers: dict[str, str]
    body: bytes
    #: The body's chunks, when it was chunked.
    chunks: list[bytes]

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[Any]:
        """A streamed body's JSON objects, one per chunk."""
        return [json.loads(chunk) for chunk in self.chunks]


def parse_response(data: bytes) -> tuple[Response | None, bytes]:
    """The first complete response in ``data`` and what follows it; ``None`` if incomplete."""
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not separator:
        return None, data
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(rest) < length:
            return None, data
        return Response(status, headers, rest[:length], []), rest[length:]
    chunks = []
    while True:
        size_line, separator, rest = rest.partition(b"\r\n")
        if not separator:
            return None, data
        size = int(size_line, 16)
        if len(rest) < size + 2:
            return None, data
        chunk, rest = rest[:size], rest[size + 2 :]
        if size == 0:
            return Response(status, headers, b"".join(chunks), chunks), rest
        chunks.append(chunk)


def partial_chunks(data: bytes) -> list[bytes]:
    """The chunks of a chunked response still in progress."""
    _, _, rest = data.partition(b"\r\n\r\n")
    chunks = []
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    return chunks


class Client:
    """One HTTP/1.1 connection to a client-port site, in memory, on a ``Clock``."""

    def __init__(self, registry: IMethodRegistry, *, max_message: int = 2 * 1024 * 1024, **site: Any) -> None:
        self.clock = Clock()
        self.observed: list[tuple[str, Any, float]] = []
        self.gateway = Gateway(
            registry, self.clock, max_receive_message_length=max_message,
            call_observer=lambda *call: self.observed.append(call),
        )
        self.site = client_site(self.gateway, site.pop("pages", {}), site.pop("version", "3.6.15"))
        self.channel = self.site.buildProtocol(ADDRESS)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Write one request."""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.channel.dataReceived("\r\n".join(lines).encode() + b"\r\n\r\n" + body)

    def response(self) -> Response:
        """The next complete response (taken out of the transport)."""
        response, rest = parse_response(self.transport.value())
        assert response is not None, self.transport.value()
        self.transport.clear()
        self.transport.write(rest)
        return response

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
        """Send a request and return its (already complete) response."""
        self.send(method, path, body, headers)
        return self.response()

    def post(self, path: str, value: Any = None, headers: dict[str, str] | None = None) -> Response:
        """POST ``value`` as JSON."""
        body = b"" if value is None else json.dumps(value).encode()
        return self.request("POST", path, body, headers)
