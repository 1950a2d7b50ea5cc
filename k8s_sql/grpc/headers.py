"""gRPC's use of HTTP/2 header blocks: request heads, timeouts, metadata and status.

Header names and values stay ``bytes`` (h2 runs with ``header_encoding=None``); only
what handlers see is decoded.  ``parse_request`` also checks that a request's header
block is well formed as HTTP/2 asks (RFC 9113 section 8.2 and 8.3), in the one pass it
makes anyway: h2's own, more general, inbound validation is off.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from k8s_sql.grpc.framing import ACCEPTED_ENCODINGS
from k8s_sql.grpc.status import GRPCError, StatusCode

Header = tuple[bytes, bytes]

#: The response headers that open every answer that is not Trailers-Only.
RESPONSE_HEADERS: tuple[Header, ...] = ((b":status", b"200"), (b"content-type", b"application/grpc"))
ACCEPT_ENCODING: Header = (b"grpc-accept-encoding", b",".join(ACCEPTED_ENCODINGS))

_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
# Request headers that are part of the protocol, not metadata handlers should see.
_RESERVED = frozenset(
    (
        b"content-type",
        b"te",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
        b"grpc-message-type",
        b"grpc-status",
        b"grpc-message",
        b"grpc-status-details-bin",
    )
)
_STATUS_VALUES = {code: str(int(code)).encode() for code in StatusCode}
_PLAIN_MESSAGE = re.compile(rb"[\x20-\x24\x26-\x7e]*")
_METADATA_NAME = re.compile(r"[0-9a-z_.\-]+")

Metadata = tuple[tuple[str, "str | bytes"], ...]


#: Header names: lower-case tokens (RFC 9110 5.1, RFC 9113 8.2.1).
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: What a field value must not hold (RFC 9113 8.2.1): NUL, CR, LF, or surrounding whitespace.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
#: Headers that HTTP/2 forbids (RFC 9113 8.2.2); ``te`` may only say ``trailers``.
_CONNECTION_SPECIFIC = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"))
#: The pseudo-headers of a request, and those it must have (RFC 9113 8.3.1).
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority"))
_REQUIRED_PSEUDO = frozenset((b":method", b":scheme", b":path"))


class MalformedRequest(Exception):
    """A request header block HTTP/2 calls malformed: the stream is reset (PROTOCOL_ERROR)."""


class RequestRejected(Exception):
    """A request refused before any handler sees it, answered with one header block."""

    def __init__(self, http_status: int, code: StatusCode, message: str, extra: Sequence[Header] = ()) -> None:
        super().__init__(http_status, code, message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.extra = extra


class RequestHead(NamedTuple):
    """What a call's request headers say."""

    path: str
    timeout: float | None
    encoding: bytes | None
    metadata: Metadata


def parse_request(headers: Iterable[Header]) -> RequestHead:
    """Read a request's header block, rejecting what grpc-go rejects with its statuses.

    Raises ``MalformedRequest`` for a block HTTP/2 calls malformed: a name not a lower-case
    token, a value with NUL, CR, LF or surrounding whitespace, a connection-specific header,
    ``te`` other than ``trailers``, pseudo-headers unknown, repeated, missing, empty
    (``:path``) or after a regular header.
    """
    path = b""
    method = b""
    content_type = b""
    timeout = None
    encoding = None
    metadata: list[tuple[str, str | bytes]] = []
    bad_header = None
    pseudo: set[bytes] = set()
    regular = False
    name_ok, bad_value = _NAME.fullmatch, _BAD_VALUE.search
    for name, value in headers:
        if bad_value(value):
            raise MalformedRequest(f"header {name!r} has a value HTTP/2 forbids")
        if name[:1] == b":":
            if regular or name not in _REQUEST_PSEUDO or name in pseudo:
                raise MalformedRequest(f"pseudo-header {name!r} is unknown, repeated or after a regular header")
            pseudo.add(name)
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
            continue
        regular = True
        if not name_ok(name) or name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            raise MalformedRequest(f"header {name!r} is not allowed in HTTP/2")
        if name not in _RESERVED:
            if name[-4:] == b"-bin":
                try:
                    metadata.append((name.decode("latin-1"), decode_binary(value)))
                except ValueError as e:
                    bad_header = bad_header or f'header "{name.decode("latin-1")}": {e}'
            else:
                metadata.append((name.decode("latin-1"), value.decode("latin-1")))
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-timeout":
            try:
                timeout = parse_timeout(value)
            except ValueError as e:
                bad_header = bad_header or f"malformed grpc-timeout: {e}"
        elif name == b"grpc-encoding":
            encoding = value
    if not pseudo >= _REQUIRED_PSEUDO or not path:
        raise MalformedRequest("a request needs :method, :scheme and a non-empty :path")
    if not _is_grpc_content_type(content_type):
        raise RequestRejected(
            415,
            StatusCode.INVALID_ARGUMENT,
            f'invalid gRPC request content-type "{content_type.decode("latin-1")}"',
        )
    if bad_header is not None:
        raise RequestRejected(400, StatusCode.INTERNAL, bad_header)
    if method != b"POST":
        raise RequestRejected(
            405, StatusCode.INTERNAL, f"invalid gRPC request method {method.decode('latin-1')}, which should be POST"
        )
    if encoding is not None and encoding not in ACCEPTED_ENCODINGS:
        raise RequestRejected(
            200,
            StatusCode.UNIMPLEMENTED,
            f'grpc: Decompressor is not installed for grpc-encoding "{encoding.decode("latin-1")}"',
            (ACCEPT_ENCODING,),
        )
    return RequestHead(path.decode("latin-1"), timeout, encoding, tuple(metadata))


def _is_grpc_content_type(value: bytes) -> bool:
    if value[:16] != b"application/grpc":
        return False
    return len(value) == 16 or value[16:17] in (b"+", b";")


def parse_timeout(value: bytes) -> float:
    """Turn a ``grpc-timeout`` value (up to 8 digits and a unit) into seconds."""
    if len(value) < 2:
        raise ValueError(f"timeout string is too short: {value!r}")
    if len(value) > 9:
        raise ValueError(f"timeout string is too long: {value!r}")
    unit = _TIMEOUT_UNITS.get(value[-1])
    if unit is None:
        raise ValueError(f"timeout unit is not recognized: {value!r}")
    digits = value[:-1]
    if not digits.isdigit():
        raise ValueError(f"timeout value is not a number: {value!r}")
    return int(digits) * unit


def encode_timeout(seconds: float) -> bytes:
    """A ``grpc-timeout`` value (at most 8 digits and a unit) no shorter than ``seconds``."""
    for unit, scale in ((b"m", 1e3), (b"S", 1.0), (b"M", 1 / 60), (b"H", 1 / 3600)):
        amount = max(math.ceil(seconds * scale), 0)
        if amount < 10**8:
            return b"%d" % amount + unit
    return b"99999999H"


def decode_binary(value: bytes) -> bytes:
    """Decode a ``-bin`` metadata value: base64, padded or not."""
    try:
        return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except binascii.Error as e:
        raise ValueError(f"illegal base64 data: {e}") from None


def encode_message(message: str) -> bytes:
    """Percent-encode a status message for ``grpc-message``, as the spec asks."""
    raw = message.encode("utf-8")
    if _PLAIN_MESSAGE.fullmatch(raw):
        return raw
    return b"".join(bytes((byte,)) if 0x20 <= byte <= 0x7E and byte != 0x25 else b"%%%02X" % byte for byte in raw)


def encode_metadata(pairs: Iterable[tuple[str, str | bytes]]) -> list[Header]:
    """Encode handler-supplied metadata; ``-bin`` values are bytes, sent as base64."""
    encoded = []
    for name, value in pairs:
        if not _METADATA_NAME.fullmatch(name) or name.startswith("grpc-") or name.encode() in _RESERVED:
            raise ValueError(f"invalid or reserved metadata name {name!r}")
        if name.endswith("-bin"):
            if not isinstance(value, bytes):
                raise TypeError(f"metadata {name!r} ends in -bin and needs a bytes value")
            encoded.append((name.encode(), base64.b64encode(value).rstrip(b"=")))
        else:
            if not isinstance(value, str) or not value.isascii() or not value.isprintable() or value != value.strip():
                raise ValueError(f"metadata {name!r} needs a printable ASCII str value, without surrounding spaces")
            encoded.append((name.encode(), value.encode("ascii")))
    return encoded


def status_headers(code: StatusCode, message: str, trailing: Sequence[Header] = ()) -> list[Header]:
    """The trailers that end a call with ``code`` and ``message``."""
    headers = [(b"grpc-status", _STATUS_VALUES[code])]
    if message:
        headers.append((b"grpc-message", encode_message(message)))
    headers.extend(trailing)
    return headers


def rejection_headers(http_status: int, error: GRPCError | RequestRejected) -> list[Header]:
    """The single header block (Trailers-Only) that refuses a request."""
    extra = error.extra if isinstance(error, RequestRejected) else ()
    return [
        (b":status", str(http_status).encode()),
        RESPONSE_HEADERS[1],
        *status_headers(error.code, error.message, extra),
    ]
