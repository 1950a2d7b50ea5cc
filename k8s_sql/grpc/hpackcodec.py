"""HPACK for a gRPC server: the blocks every call sends prepared once, indexed fields decoded inline.

hpack's encoder and decoder are right and general; a gRPC server's header blocks are few
and alike.  Every call answers with the same response headers and, mostly, the same OK
trailers (``PreparedEncoder``), and a client's request blocks are, after its first call,
mostly fields indexed in the tables (``Decoder``): both are served here without hpack's
per-field work, and everything else by hpack itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hpack import Decoder as HPACKDecoder
from hpack import Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError, InvalidTableIndex, InvalidTableSizeError, OversizedHeaderListError
from hpack.table import HeaderTable

#: A header field as h2 passes it with ``header_encoding=None``.
Header = tuple[bytes, bytes]

#: Header fields HPACK's static table holds whole (RFC 7541 appendix A): indexed, they add nothing.
_STATIC_ENTRIES = frozenset({(b":status", b"200")})
_STATIC = HeaderTable.STATIC_TABLE
_STATIC_LENGTH = len(_STATIC)
#: RFC 7541 4.1: an entry's size is its name's and value's lengths plus 32.
_ENTRY_OVERHEAD = 32


def prepare(headers: Sequence[Header]) -> bytes:
    """An HPACK block for ``headers`` that uses the static table only and indexes nothing,
    so that it is right whatever the dynamic table of the connection holds."""
    encoder = Encoder()
    return b"".join(
        encoder.encode([header]) if header in _STATIC_ENTRIES else encoder.encode([NeverIndexedHeaderTuple(*header)])
        for header in headers
    )


class PreparedEncoder(Encoder):
    """hpack's encoder, answering the header blocks given at creation with bytes prepared once.

    A prepared block leaves the dynamic table as it is, so hpack's encoder stays in step
    with the peer's decoder; after a change of the table's size, which the next block must
    announce, hpack encodes it.
    """

    def __init__(self, blocks: dict[tuple[Header, ...], bytes]) -> None:
        super().__init__()
        self._blocks = blocks

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        """The block for ``headers``."""
        block = self._blocks.get(tuple(headers))
        if block is not None and not self.header_table.resized:
            return block
        return super().encode(headers, huffman)


class Decoder(HPACKDecoder):
    """hpack's decoder, with indexed fields of one-byte index (static table, and the first 65
    dynamic entries) looked up inline; every other representation is hpack's.

    It answers as hpack's does, limits and errors included, for ``raw`` decoding (h2's, with
    ``header_encoding=None``); fields come back as plain tuples where hpack makes
    ``HeaderTuple``.
    """

    def decode(self, data: bytes, raw: bool = False) -> Iterable[Any]:
        """The header list of a complete block."""
        if not raw:
            return super().decode(data, raw)
        view = memoryview(data)
        dynamic = self.header_table.dynamic_entries
        limit = self.max_header_list_size
        headers: list[Any] = []
        size = 0
        offset = 0
        end = len(data)
        while offset < end:
            byte = data[offset]
            if 0x80 < byte < 0xFF:  # indexed, the index in this byte
                index = byte - 0x81
                if index < _STATIC_LENGTH:
                    header = _STATIC[index]
                elif index - _STATIC_LENGTH < len(dynamic):
                    header = dynamic[index - _STATIC_LENGTH]
                else:
                    raise InvalidTableIndex(f"Invalid table index {index + 1}")
                offset += 1
            elif byte & 0x80:
                header, consumed = self._decode_indexed(view[offset:])
                offset += consumed
            elif byte & 0x40:
                header, consumed = self._decode_literal_index(view[offset:])
                offset += consumed
            elif byte & 0x20:
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                offset += self._update_encoding_context(view[offset:])
                continue
            else:
                header, consumed = self._decode_literal_no_index(view[offset:])
                offset += consumed
            headers.append(header)
            size += _ENTRY_OVERHEAD + len(header[0]) + len(header[1])
            if size > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        if self.header_table_size > self.max_allowed_table_size:
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        return headers
