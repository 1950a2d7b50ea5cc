"""A gateway client for end-to-end tests: one HTTP/1.1 connection (kept alive), JSON
answers reduced to comparable data."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

from tests.differential import strip_identity


class GatewayClient:
    """POSTs JSON to one server's gateway over one kept-alive HTTP/1.1 connection."""

    def __init__(self, endpoint: str, context: ssl.SSLContext | None = None, timeout: float = 30.0) -> None:
        host, port = endpoint.rsplit(":", 1)
        if context is None:
            self.connection: http.client.HTTPConnection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        else:
            self.connection = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                ) -> tuple[int, str, bytes]:
        """Status, content type and body of one request."""
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()

    def post(self, path: str, value: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """Status and parsed JSON of a POST of ``value``."""
        body = b"" if value is None else json.dumps(value).encode()
        status, content_type, data = self.request("POST", path, body, headers)
        assert content_type == "application/json", (status, content_type, data)
        return status, json.loads(data)

    def stream(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, list[Any]]:
        """Status and the JSON objects of a streamed response (one per line)."""
        status, _, data = self.request("POST", path, body, headers)
        return status, [json.loads(line) for line in data.splitlines() if line.strip()]

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def comparable(status: int, answer: Any) -> Any:
    """An answer with what differs between servers by nature (cluster and member ids,
    raft terms) removed."""
    return {"status": status, "answer": strip_identity(answer)}
