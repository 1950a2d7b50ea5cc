"""Request heads, timeouts, metadata and status encoding."""

from __future__ import annotations

import pytest

from k8s_sql.grpc.headers import (
    RequestRejected,
    decode_binary,
    encode_message,
    encode_metadata,
    parse_request,
    parse_timeout,
    status_headers,
)
from k8s_sql.grpc.status import StatusCode

from tests.grpc.h2peer import request_headers


@pytest.mark.parametrize(("value", "seconds"), [
    (b"1H", 3600.0), (b"2M", 120.0), (b"3S", 3.0), (b"250m", 0.25), (b"7u", 7e-6), (b"99999999n", 0.099999999),
    (b"0S", 0.0),
])
def test_timeouts(value: bytes, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1", b"1x", b"123456789S", b"-1S", b"+1S", b"1.5S", b" 1S"])
def test_bad_timeouts(value: bytes) -> None:
    with pytest.raises(ValueError):
        parse_timeout(value)


@pytest.mark.parametrize(("value", "decoded"), [
    (b"AAH/", b"\x00\x01\xff"), (b"AQ", b"\x01"), (b"AQ==", b"\x01"), (b"AQI", b"\x01\x02"), (b"", b""),
])
def test_binary_metadata_padded_or_not(value: bytes, decoded: bytes) -> None:
    assert decode_binary(value) == decoded


@pytest.mark.parametrize("value", [b"A", b"@@@@", b"AQ=A"])
def test_bad_binary_metadata(value: bytes) -> None:
    with pytest.raises(ValueError):
        decode_binary(value)


def test_message_percent_encoding() -> None:
    assert encode_message("plain text, ok!") == b"plain text, ok!"
    assert encode_message("50% über\r\n") == b"50%25 %C3%BCber%0D%0A"
    assert encode_message("etcdserver: key is not provided") == b"etcdserver: key is not provided"


def test_status_headers() -> None:
    assert status_headers(StatusCode.OK, "") == [(b"grpc-status", b"0")]
    assert status_headers(StatusCode.NOT_FOUND, "gone", [(b"x", b"y")]) == [
        (b"grpc-status", b"5"), (b"grpc-message", b"gone"), (b"x", b"y"),
    ]


def test_encode_metadata() -> None:
    assert encode_metadata([("x-a", "b"), ("x-c-bin", b"\x00\xff")]) == [(b"x-a", b"b"), (b"x-c-bin", b"AP8")]
    for bad in [("X-Upper", "v"), ("grpc-status", "0"), ("content-type", "x"), ("x-bin", "str"), ("x", "\n")]:
        with pytest.raises((ValueError, TypeError)):
            encode_metadata([bad])


def test_parse_request() -> None:
    head = parse_request(request_headers(
        "/a.B/C", (b"grpc-timeout", b"5S"), (b"grpc-encoding", b"gzip"), (b"user-agent", b"test/1"),
        (b"x-bin", b"AQ"), (b"grpc-accept-encoding", b"gzip"), content_type=b"application/grpc+proto",
    ))
    assert head.path == "/a.B/C" and head.timeout == 5.0 and head.encoding == b"gzip"
    assert head.metadata == (("user-agent", "test/1"), ("x-bin", b"\x01"))


@pytest.mark.parametrize(("content_type", "accepted"), [
    (b"application/grpc", True), (b"application/grpc+proto", True), (b"application/grpc;charset=x", True),
    (b"application/grpcx", False), (b"application/json", False), (b"", False),
])
def test_content_types(content_type: bytes, accepted: bool) -> None:
    headers = request_headers("/a.B/C", content_type=content_type)
    if accepted:
        parse_request(headers)
    else:
        with pytest.raises(RequestRejected) as raised:
            parse_request(headers)
        assert raised.value.http_status == 415 and raised.value.code == StatusCode.INVALID_ARGUMENT
