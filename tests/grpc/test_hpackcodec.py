"""The HPACK codec: prepared blocks decode as what they stand for, and the decoder answers
as hpack's does, block by block over a connection's life (its dynamic table included)."""

from __future__ import annotations

import hpack
import pytest
from hpack.exceptions import HPACKDecodingError, InvalidTableIndex, InvalidTableSizeError, OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_sql.grpc.hpackcodec import Decoder, PreparedEncoder, prepare

NAMES = st.sampled_from([b":method", b":path", b"content-type", b"grpc-timeout", b"te", b"x-custom", b"authorization"])
VALUES = st.binary(min_size=0, max_size=40)
BLOCK = st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=12)


def decoded(decoder: hpack.Decoder, block: bytes) -> list[tuple[bytes, bytes]]:
    return [tuple(header) for header in decoder.decode(block, raw=True)]  # type: ignore[misc]


@settings(max_examples=150, deadline=None)
@given(blocks=st.lists(BLOCK, min_size=1, max_size=20), table_size=st.sampled_from([0, 256, 4096]))
def test_a_connections_blocks_decode_as_hpack_decodes_them(blocks: list, table_size: int) -> None:
    encoder = hpack.Encoder()
    encoder.header_table_size = table_size
    ours, reference = Decoder(), hpack.Decoder()
    for headers in blocks:
        block = encoder.encode(headers)
        assert decoded(ours, block) == decoded(reference, block) == headers
    assert ours.header_table.dynamic_entries == reference.header_table.dynamic_entries


def test_indexes_past_one_byte_go_through_hpack() -> None:
    encoder, decoder = hpack.Encoder(), Decoder()
    headers = [(b"x-%d" % number, b"v") for number in range(100)]
    assert decoded(decoder, encoder.encode(headers)) == headers  # fills both tables
    again = encoder.encode(headers)
    assert max(again) == 0xFF  # some indexes take more than one byte
    assert decoded(decoder, again) == headers


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (b"\x80", InvalidTableIndex),  # index 0
        (b"\xbe", InvalidTableIndex),  # index 62: the dynamic table is empty
        (b"\x82\x3f\xe1\x1f", HPACKDecodingError),  # a table size update after a field
        (b"\x3f\xe1\x3f", InvalidTableSizeError),  # a size over the allowed maximum
    ],
)
def test_bad_blocks_are_refused_as_hpack_refuses_them(block: bytes, error: type[Exception]) -> None:
    for decoder in (Decoder(), hpack.Decoder()):
        with pytest.raises(error):
            decoder.decode(block, raw=True)


def test_the_header_list_limit_counts_indexed_fields_too() -> None:
    decoder = Decoder()
    decoder.max_header_list_size = 32 * 3 + 20
    assert decoded(decoder, b"\x82\x84") == [(b":method", b"GET"), (b":path", b"/")]
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(b"\x82" * 4, raw=True)


def test_prepared_blocks_decode_whatever_the_table_holds() -> None:
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    encoder = PreparedEncoder({tuple(headers): prepare(headers)})
    decoder = hpack.Decoder()
    decoder.decode(encoder.encode([(b"content-type", b"text/plain")]), raw=True)  # an entry indexed
    for _ in range(2):
        assert decoded(decoder, encoder.encode(headers)) == headers
    assert encoder.encode(headers) == prepare(headers)
    encoder.header_table_size = 0  # a size change must be announced: hpack encodes that block
    block = encoder.encode(headers)
    assert block != prepare(headers) and decoded(decoder, block) == headers
