"""gRPC's length-prefixed messages: one flag byte, a 4-byte big-endian length, the payload.

HTTP/2 DATA frames do not align with messages, so :class:`MessageReader` reassembles
messages from payloads of any size, down to one byte at a time.
"""

from __future__ import annotations

import struct
import zlib

from k8s_sql.grpc.status import GRPCError, StatusCode

PREFIX = struct.Struct(">BI")
PREFIX_SIZE = PREFIX.size

#: The message encodings this server decompresses, as advertised in grpc-accept-encoding.
ACCEPTED_ENCODINGS = (b"identity", b"gzip")


def frame_message(payload: bytes) -> bytes:
    """Prefix an uncompressed message with its flag and length."""
    return PREFIX.pack(0, len(payload)) + payload


class MessageReader:
    """Reassembles the request messages of one stream.

    ``limit`` is the largest message accepted, before and after decompression;
    ``encoding`` is the stream's ``grpc-encoding`` (already checked to be accepted);
    ``single`` stops at the first message (a unary call reads no further, as grpc-go).
    Errors are raised as :class:`GRPCError` with grpc-go's codes and texts.
    """

    __slots__ = ("_buffer", "_gzip", "_limit", "_single")

    def __init__(self, limit: int, encoding: bytes | None, single: bool = False) -> None:
        self._buffer = bytearray()
        self._single = single
        self._limit = limit
        self._gzip = encoding == b"gzip"

    @property
    def partial(self) -> bool:
        """Whether part of a message is waiting for the rest."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the messages they complete."""
        buffer = self._buffer
        if buffer:
            buffer += data
            view = memoryview(buffer)
        else:
            view = memoryview(data)
        messages: list[bytes] = []
        offset = 0
        end = len(view)
        try:
            while end - offset >= PREFIX_SIZE and not (self._single and messages):
                flag, length = PREFIX.unpack_from(view, offset)
                if length > self._limit:
                    raise GRPCError(
                        StatusCode.RESOURCE_EXHAUSTED,
                        f"grpc: received message larger than max ({length} vs. {self._limit})",
                    )
                stop = offset + PREFIX_SIZE + length
                if stop > end:
                    break
                payload = view[offset + PREFIX_SIZE : stop].tobytes()
                if flag:
                    payload = self._decompress(flag, payload)
                messages.append(payload)
                offset = stop
        finally:
            view.release()
        if buffer:
            del buffer[:offset]
        elif offset < end:
            buffer += data[offset:] if offset else data
        return messages

    def _decompress(self, flag: int, payload: bytes) -> bytes:
        if flag != 1:
            raise GRPCError(StatusCode.INTERNAL, f"grpc: received unexpected payload format {flag}")
        if not self._gzip:
            raise GRPCError(StatusCode.INTERNAL, "grpc: compressed flag set with identity or empty encoding")
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            message = inflater.decompress(payload, self._limit + 1)
        except zlib.error as e:
            raise GRPCError(StatusCode.INTERNAL, f"grpc: failed to decompress the received message: {e}") from None
        if len(message) > self._limit:
            raise GRPCError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"grpc: received message after decompression larger than max ({self._limit})",
            )
        if not inflater.eof:
            raise GRPCError(StatusCode.INTERNAL, "grpc: failed to decompress the received message: unexpected EOF")
        return message
