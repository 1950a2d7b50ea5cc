"""The twisted.web request of the client port: etcd's CORS headers and a bounded body."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.web.server import Request

#: What etcd (with its default ``--cors '*'``) adds to every response of its client port.
CORS_HEADERS = (
    (b"access-control-allow-methods", b"POST, GET, OPTIONS, PUT, DELETE"),
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-headers", b"accept, content-type, authorization"),
)


class ClientRequest(Request):
    """A request on the client port.

    Its body is kept in memory up to ``max_body`` bytes; beyond that it is read and
    dropped, and ``too_large`` is set, so that the resource can refuse it without the
    server holding more.  ``OPTIONS`` (a CORS preflight) is answered 200 with no body,
    whatever the path, as etcd answers it.
    """

    def __init__(self, *args: Any, max_body: int, **kwargs: Any) -> None:
        # Bodies are JSON, whatever their content type says (curl -d says a form).
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)
        self.max_body = max_body
        #: Bytes of body received.
        self.body_size = 0
        #: Whether the body was larger than ``max_body`` (and so dropped).
        self.too_large = False

    def gotLength(self, length: int | None) -> None:
        """Keep the body in memory (never in a temporary file written from the reactor)."""
        self.content = BytesIO()
        self.too_large = length is not None and length > self.max_body

    def handleContentChunk(self, data: bytes) -> None:
        """Keep the body's bytes while it stays within bounds."""
        self.body_size += len(data)
        if self.body_size > self.max_body:
            if not self.too_large:
                self.too_large = True
                self.content = BytesIO()
            return
        if not self.too_large:
            assert self.content is not None
            self.content.write(data)

    def process(self) -> None:
        """Add etcd's CORS headers; answer a preflight, or find the resource."""
        for name, value in CORS_HEADERS:
            self.setHeader(name, value)
        if self.method == b"OPTIONS":
            self.setHeader(b"content-length", b"0")
            self.finish()
            return
        super().process()
