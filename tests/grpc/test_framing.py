"""Length-prefixed message reassembly, limits and decompression."""

from __future__ import annotations

import gzip
import struct

import pytest

from k8s_sql.grpc.framing import MessageReader, frame_message
from k8s_sql.grpc.status import GRPCError, StatusCode


def prefixed(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def test_frame_message() -> None:
    assert frame_message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert frame_message(b"") == b"\x00\x00\x00\x00\x00"


def test_one_byte_at_a_time() -> None:
    reader = MessageReader(1000, None)
    parts = [prefixed(b"first"), prefixed(b""), prefixed(b"third" * 50)]
    stream = b"".join(parts)
    boundaries = {len(parts[0]), len(parts[0]) + len(parts[1]), len(stream)}
    messages = []
    for i in range(len(stream)):
        messages.extend(reader.feed(stream[i:i + 1]))
        assert reader.partial == (i + 1 not in boundaries)
    assert messages == [b"first", b"", b"third" * 50]


@pytest.mark.parametrize("cut", range(1, 14))
def test_any_cut_between_two_chunks(cut: int) -> None:
    reader = MessageReader(1000, None)
    stream = prefixed(b"ab") + prefixed(b"cdef")
    assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == [b"ab", b"cdef"]
    assert not reader.partial


def test_many_messages_in_one_chunk() -> None:
    reader = MessageReader(1000, None)
    assert reader.feed(b"".join(prefixed(b"%d" % i) for i in range(100))) == [b"%d" % i for i in range(100)]


def test_limit_is_checked_on_the_prefix() -> None:
    reader = MessageReader(10, None)
    assert reader.feed(prefixed(b"x" * 10)) == [b"x" * 10]
    with pytest.raises(GRPCError) as raised:
        reader.feed(struct.pack(">BI", 0, 11))  # refused before the payload arrives
    assert raised.value.code == StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.message == "grpc: received message larger than max (11 vs. 10)"


def test_gzip() -> None:
    reader = MessageReader(100, b"gzip")
    assert reader.feed(prefixed(gzip.compress(b"hello"), flag=1) + prefixed(b"plain")) == [b"hello", b"plain"]


@pytest.mark.parametrize(("encoding", "payload", "flag", "code", "text"), [
    (None, b"x", 1, StatusCode.INTERNAL, "grpc: compressed flag set with identity or empty encoding"),
    (b"identity", b"x", 1, StatusCode.INTERNAL, "grpc: compressed flag set with identity or empty encoding"),
    (b"gzip", b"x", 2, StatusCode.INTERNAL, "grpc: received unexpected payload format 2"),
    (b"gzip", b"not gzip", 1, StatusCode.INTERNAL, "grpc: failed to decompress the received message"),
    (b"gzip", gzip.compress(b"x" * 50)[:-4], 1, StatusCode.INTERNAL, "unexpected EOF"),
    (b"gzip", gzip.compress(b"x" * 101), 1, StatusCode.RESOURCE_EXHAUSTED, "after decompression larger than max"),
])
def test_bad_compressed_messages(encoding: bytes | None, payload: bytes, flag: int, code: StatusCode,
                                 text: str) -> None:
    with pytest.raises(GRPCError) as raised:
        MessageReader(100, encoding).feed(prefixed(payload, flag))
    assert raised.value.code == code and text in raised.value.message


def test_single_stops_at_the_first_message() -> None:
    """A unary call's reader takes one message and never parses what follows it."""
    reader = MessageReader(100, None, single=True)
    assert reader.feed(prefixed(b"one") + prefixed(b"two") + prefixed(b"x" * 10, flag=7)) == [b"one"]
