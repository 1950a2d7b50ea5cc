"""The hand-written RangeResponse encoding is byte for byte protobuf's."""

from __future__ import annotations

from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given
from hypothesis import strategies as st

from k8s_sql.etcd import convert, encode
from k8s_sql.etcd.header import Identity
from k8s_sql.proto import kv_pb2, rpc_pb2, wire
from k8s_sql.store.model import Event, EventType, KeyValue, RangeResponse

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
# Zeros, the one-, two- and three-byte varints looked up or built apart, and any other.
NUMBERS = st.one_of(st.sampled_from([0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21]), INT64)

key_values = st.builds(
    KeyValue,
    key=st.binary(max_size=300),
    create_revision=NUMBERS,
    mod_revision=NUMBERS,
    version=NUMBERS,
    value=st.one_of(st.binary(max_size=40), st.sampled_from([16383, 16384, 2**21]).map(lambda size: b"v" * size)),
    lease=NUMBERS,
)
responses = st.builds(
    RangeResponse, revision=NUMBERS, kvs=st.lists(key_values, max_size=8).map(tuple), more=st.booleans(), count=NUMBERS,
)
identities = st.builds(Identity, cluster_id=UINT64, member_id=UINT64, raft_term=UINT64)


@given(st.one_of(st.integers(0, 2**64 - 1), INT64))
def test_varints_are_protobufs(value: int) -> None:
    assert wire.varint(value) == _VarintBytes(value % 2**64)


@given(responses, identities)
def test_range_responses_are_encoded_as_protobuf_encodes_them(result: RangeResponse, identity: Identity) -> None:
    assert encode.range_response(result, identity) == convert.range_response(result, identity).SerializeToString()


def test_a_page_of_live_keys_reads_back() -> None:
    kvs = tuple(KeyValue(b"/registry/pods/ns/pod-%04d" % n, 1000 + n, 200_000 + n, 3, b"v" * 1024) for n in range(500))
    identity = Identity(2**63 + 5, 12345)
    message = rpc_pb2.RangeResponse.FromString(encode.range_response(RangeResponse(300_000, kvs, True, 2000), identity))
    assert message == convert.range_response(RangeResponse(300_000, kvs, True, 2000), identity)
    assert message.kvs[499].key == b"/registry/pods/ns/pod-0499" and message.count == 2000 and message.more


def event_message(event: Event, with_prev_kv: bool) -> kv_pb2.Event:
    """The ``mvccpb.Event`` protobuf builds for a change: the reference for ``encode.event``."""
    message = kv_pb2.Event(type=event.type.name, kv=convert.kv_message(event.kv))
    if with_prev_kv and event.prev_kv is not None:
        message.prev_kv.CopyFrom(convert.kv_message(event.prev_kv))
    return message


events = st.builds(
    Event,
    type=st.sampled_from(EventType),
    kv=key_values,
    prev_kv=st.one_of(st.none(), key_values, st.just(KeyValue(b""))),
)


@given(events, st.booleans())
def test_events_are_encoded_as_protobuf_encodes_them(event: Event, prev_kv: bool) -> None:
    assert encode.event(event, prev_kv) == event_message(event, prev_kv).SerializeToString()


@given(events, st.booleans(), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), identities)
def test_watch_responses_concatenate_a_head_and_event_fields(
    event: Event, prev_kv: bool, watch_id: int, revision: int, identity: Identity
) -> None:
    head = encode.header_field(identity, revision) + encode.watch_id_field(watch_id)
    response = rpc_pb2.WatchResponse.FromString(head + encode.EncodedEvents().field(event, prev_kv) * 2)
    expected = rpc_pb2.WatchResponse(header=identity.header(revision), watch_id=watch_id)
    expected.events.extend([event_message(event, prev_kv)] * 2)
    assert response == expected


def test_fragments_fill_each_below_the_limit_and_mark_all_but_the_last() -> None:
    fields = [b"e" * 10] * 5
    assert list(encode.fragments(b"H", b"M", fields, 25)) == [b"M" + b"e" * 20, b"M" + b"e" * 20, b"H" + b"e" * 10]
    # An event larger than the limit still travels, alone.
    assert list(encode.fragments(b"H", b"M", [b"x" * 40, b"y"], 25)) == [b"M" + b"x" * 40, b"Hy"]
