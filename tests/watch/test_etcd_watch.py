"""The etcd Watch stream over test doubles: ids, ordering, replay, filters, fragments,
cancellation, compaction, progress notifications and slow readers."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.etcd.encode import EncodedEvents
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.errors import translate
from k8s_sql.etcd.services import register
from k8s_sql.etcd.watch import DUPLICATE_ID, EMPTY_RANGE, WatchService, WatchStream
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import kv_pb2, rpc_pb2
from k8s_sql.store.model import Event, EventType, KeyValue
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import WatchHub
from tests.watch.doubles import FakeCall, MemoryLog

IDENTITY = Identity(cluster_id=11, member_id=22)
PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE


class Server:
    """A watch service over a memory log whose commits all poke the follower."""

    def __init__(self, manual: bool = False, **options: Any) -> None:
        self.clock = Clock()
        self.log = MemoryLog(manual=manual)
        self.hub = WatchHub()
        self.follower = Follower(self.log, self.hub, self.clock)
        self.follower.startService()
        if manual:
            self.log.answer()
        self.service = WatchService(self.hub, self.log, self.follower, IDENTITY, self.clock, **options)
        self.calls: dict[FakeCall, Deferred[None]] = {}
        self.outcomes: dict[FakeCall, list[Any]] = {}
        self.streams: dict[FakeCall, WatchStream] = {}

    def open(self) -> FakeCall:
        call = FakeCall()
        verifyObject(IServerCall, call)
        self.streams[call] = stream = WatchStream(self.service, call)
        self.calls[call] = done = ensureDeferred(stream.run())
        self.outcomes[call] = []
        done.addBoth(self.outcomes[call].append)
        return call

    def outcome(self, call: FakeCall) -> Failure | None:
        """How the call ended, store failures translated as registration has the gRPC layer
        do: ``None`` while it runs."""
        [outcome] = self.outcomes[call] or [None]
        if isinstance(outcome, Failure) and (translated := translate(outcome.value)) is not None:
            return Failure(translated)
        return outcome

    def hang_up(self, call: FakeCall) -> None:
        """The client resets the stream: the gRPC layer ends the call and cancels the handler."""
        call.ended = True
        self.calls[call].cancel()


def events(response: rpc_pb2.WatchResponse) -> list[tuple[int, bytes, int, bool]]:
    """``(type, key, mod_revision, has prev_kv)`` for each event of a response."""
    return [(event.type, event.kv.key, event.kv.mod_revision, event.HasField("prev_kv")) for event in response.events]


def revisions(responses: list[rpc_pb2.WatchResponse]) -> list[int]:
    return [event.kv.mod_revision for response in responses for event in response.events]


WATCH_METHOD = "/etcdserverpb.Watch/Watch"


def queued_sizes(outbox: Any) -> list[int]:
    """The list of ``outbox``'s sizes after each message put in it from now on."""
    sizes: list[int] = []
    put = outbox.put

    def recording_put(message: bytes) -> None:
        put(message)
        sizes.append(outbox.size)

    outbox.put = recording_put
    return sizes


def test_registers_the_bidi_watch_method() -> None:
    registry = MethodRegistry()
    server = Server()
    register(registry, server.service)
    method = registry.lookup(WATCH_METHOD)
    assert method.kind is CallKind.BIDI
    handler, deserialize, serialize = method.handler, method.deserialize, method.serialize
    request = rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=3))
    assert deserialize(request.SerializeToString()) == request
    assert serialize(b"encoded") == b"encoded"
    call = FakeCall()
    done = ensureDeferred(handler(call))
    call.create(b"k")
    [created] = call.take()
    assert created.created and created.header.revision == 1
    done.addErrback(lambda _: None)
    done.cancel()
    assert len(server.hub) == 0


def test_created_comes_first_with_the_current_revision() -> None:
    server = Server()
    server.log.write((b"a", b"1"))
    call = server.open()
    call.create(b"a")
    [created] = call.take()
    assert created.created and not created.canceled and created.watch_id == 0
    assert created.header.revision == 2
    assert (created.header.cluster_id, created.header.member_id, created.header.raft_term) == (11, 22, 1)
    server.log.write((b"a", b"2"))
    [event] = call.take()
    assert events(event) == [(PUT, b"a", 3, False)]
    assert event.header.revision == 3 and event.watch_id == 0


def test_created_precedes_replayed_events() -> None:
    server = Server()
    server.log.write((b"a", b"1"))
    call = server.open()
    call.create(b"a", start_revision=1)
    created, replayed = call.take()
    assert created.created and events(replayed) == [(PUT, b"a", 2, False)]


def test_watch_ids_follow_etcds_per_stream_counter() -> None:
    """0 picks the next unused id of a counter that skips ids in use and never goes back."""
    server = Server()
    call = server.open()
    call.create(b"a")
    call.create(b"b", watch_id=2)
    call.create(b"c")
    call.create(b"d")
    assert [response.watch_id for response in call.take()] == [0, 2, 1, 3]
    call.cancel(0)
    call.create(b"e")
    assert [(response.watch_id, response.canceled, response.created) for response in call.take()] == [
        (0, True, False),
        (4, False, True),
    ]
    other = server.open()
    other.create(b"a")
    assert [response.watch_id for response in other.take()] == [0]


def test_a_duplicate_id_is_refused_as_etcd_does() -> None:
    server = Server()
    call = server.open()
    call.create(b"a", watch_id=7)
    call.create(b"b", watch_id=7)
    first, refused = call.take()
    assert first.watch_id == 7 and first.created
    assert (refused.watch_id, refused.created, refused.canceled) == (-1, True, True)
    assert refused.cancel_reason == DUPLICATE_ID == "mvcc: duplicate watch ID provided on the WatchStream"
    assert refused.header.revision == 1
    server.log.write((b"a", b"1"), (b"b", b"1"))
    [event] = call.take()
    assert event.watch_id == 7 and events(event) == [(PUT, b"a", 2, False)]


def test_an_empty_range_is_refused_as_etcd_does() -> None:
    server = Server()
    call = server.open()
    call.create(b"b", range_end=b"a")
    call.create(b"b", range_end=b"b")
    for refused in call.take():
        assert (refused.watch_id, refused.created, refused.canceled) == (-1, True, True)
        assert refused.cancel_reason == EMPTY_RANGE == "mvcc: watcher range is empty"
    assert len(server.hub) == 0


def test_a_negative_start_revision_is_refused_as_compacted() -> None:
    server = Server()
    call = server.open()
    call.create(b"a", start_revision=-5)
    [refused] = call.take()
    assert (refused.watch_id, refused.created, refused.canceled) == (-1, True, True)
    assert refused.cancel_reason == "etcdserver: mvcc: required revision has been compacted"


def test_key_ranges_read_as_etcd_reads_them() -> None:
    server = Server()
    call = server.open()
    call.create(b"m", range_end=b"\x00")  # every key from "m" on
    call.create(b"", range_end=b"\x00")  # every key
    call.create(b"/p/", range_end=b"/p0")  # a prefix
    call.take()
    server.log.write((b"a", b"1"), (b"/p/x", b"1"), (b"z", b"1"))
    by_watch = {response.watch_id: [key for _, key, _, _ in events(response)] for response in call.take()}
    assert by_watch == {0: [b"z"], 1: [b"a", b"/p/x", b"z"], 2: [b"/p/x"]}


def test_start_zero_means_after_the_current_revision() -> None:
    server = Server()
    server.log.write((b"a", b"1"))
    call = server.open()
    call.create(b"a")
    call.take()
    server.log.write((b"a", b"2"))
    assert revisions(call.take()) == [3]


def test_replay_then_live_without_gap_or_duplicate() -> None:
    server = Server()
    for number in range(5):
        server.log.write((b"k", b"%d" % number))
    call = server.open()
    call.create(b"k", start_revision=3)
    created, replay = call.take()
    assert events(replay) == [(PUT, b"k", revision, False) for revision in (3, 4, 5, 6)]
    assert replay.header.revision == 6
    server.log.write((b"k", b"5"))
    server.log.write((b"k", b"6"))
    live = call.take()
    assert [revisions([response]) for response in live] == [[7], [8]]
    assert [response.header.revision for response in live] == [7, 8]


def test_live_responses_carry_one_revision_each() -> None:
    server = Server(manual=True)
    call = server.open()
    call.create(b"k", range_end=b"l")
    call.take()
    server.log.write((b"k1", b"1"), (b"k2", b"1"))
    server.log.write((b"k3", b"1"))
    server.log.answer()  # one read brings both revisions
    responses = call.take()
    assert [revisions([response]) for response in responses] == [[2, 2], [3]]


def test_a_start_in_the_future_waits() -> None:
    server = Server()
    call = server.open()
    call.create(b"k", start_revision=4)
    call.take()
    server.log.write((b"k", b"1"))
    server.log.write((b"k", b"2"))
    assert call.take() == []
    server.log.write((b"k", b"3"))
    assert revisions(call.take()) == [4]


def test_prev_kv_on_every_non_create_event_when_asked() -> None:
    server = Server()
    call = server.open()
    call.create(b"k", prev_kv=True)
    call.create(b"k")
    call.take()
    server.log.write((b"k", b"1"))
    server.log.write((b"k", b"2"))
    server.log.write((b"k", None))
    responses = call.take()
    with_prev = [events(response)[0] for response in responses if response.watch_id == 0]
    without = [events(response)[0] for response in responses if response.watch_id == 1]
    assert with_prev == [(PUT, b"k", 2, False), (PUT, b"k", 3, True), (DELETE, b"k", 4, True)]
    assert without == [(PUT, b"k", 2, False), (PUT, b"k", 3, False), (DELETE, b"k", 4, False)]
    update = next(r for r in responses if r.watch_id == 0 and r.events[0].kv.mod_revision == 3)
    assert update.events[0].prev_kv.value == b"1" and update.events[0].kv.value == b"2"
    assert update.events[0].kv.create_revision == 2 and update.events[0].kv.version == 2


def test_noput_and_nodelete_filters() -> None:
    server = Server()
    call = server.open()
    call.create(b"k", filters=[rpc_pb2.WatchCreateRequest.NOPUT])
    call.create(b"k", filters=[rpc_pb2.WatchCreateRequest.NODELETE])
    call.take()
    server.log.write((b"k", b"1"))
    server.log.write((b"k", None))
    assert [(response.watch_id, events(response)[0][0]) for response in call.take()] == [(1, PUT), (0, DELETE)]


def test_catch_up_packs_revisions_but_never_splits_one() -> None:
    server = Server(max_response_bytes=300)
    for number in range(6):
        server.log.write((b"a%d" % number, b"x" * 100), (b"b%d" % number, b"x" * 100))
    call = server.open()
    call.create(b"", range_end=b"\x00", start_revision=2)
    created, *replay = call.take()
    assert len(replay) > 1
    for response in replay:
        assert not response.fragment
        assert len({event.kv.mod_revision for event in response.events}) >= 1
    assert revisions(replay) == [revision for revision in range(2, 8) for _ in (0, 1)]
    # Each revision's two events sit in the same response.
    for response in replay:
        assert len(response.events) % 2 == 0


def test_a_large_revision_is_fragmented_only_when_allowed() -> None:
    server = Server(max_response_bytes=1000)
    call = server.open()
    call.create(b"k", range_end=b"l", fragment=True)
    call.create(b"k", range_end=b"l")
    call.take()
    server.log.write(*[(b"k%d" % number, b"x" * 300) for number in range(7)])
    responses = call.take()
    fragments = [response for response in responses if response.watch_id == 0]
    whole = [response for response in responses if response.watch_id == 1]
    assert len(whole) == 1 and len(whole[0].events) == 7 and not whole[0].fragment
    assert len(fragments) > 1
    assert [response.fragment for response in fragments] == [True] * (len(fragments) - 1) + [False]
    assert all(response.ByteSize() < 1000 for response in fragments)
    assert [event.kv.key for response in fragments for event in response.events] == [b"k%d" % n for n in range(7)]
    assert {response.header.revision for response in fragments} == {2}


def test_cancel_answers_and_stops_the_events() -> None:
    server = Server()
    call = server.open()
    call.create(b"k")
    call.take()
    call.cancel(0)
    [canceled] = call.take()
    assert (canceled.watch_id, canceled.canceled, canceled.created) == (0, True, False)
    assert canceled.header.revision == 1
    assert len(server.hub) == 0
    server.log.write((b"k", b"1"))
    assert call.take() == []
    call.cancel(42)  # unknown: etcd ignores it
    assert call.take() == []


def test_a_reset_stream_frees_every_watcher() -> None:
    server = Server(manual=True)
    server.log.write((b"k", b"1"))
    server.log.answer()
    call = server.open()
    call.create(b"k")
    call.create(b"j")
    call.create(b"k", start_revision=1)  # replaying: its read is in flight
    call.take()
    assert len(server.hub) == 2 and len(server.log.pending) == 1
    server.hang_up(call)
    assert len(server.hub) == 0
    server.log.answer()
    server.log.write((b"k", b"2"))
    server.log.answer()
    assert call.take() == []
    assert server.outcome(call) is not None


def test_a_call_ended_while_sending_frees_every_watcher() -> None:
    """The transport may end the call from inside ``send``: cleanup copes with the sender,
    the feed and the hub all being mid-way up the stack."""
    server = Server()
    server.log.write((b"k", b"1"))
    call = server.open()
    call.create(b"k")
    call.create(b"j")
    call.take()
    call.on_send = lambda: server.hang_up(call)
    server.log.write((b"k", b"2"), (b"j", b"2"))  # two responses queued; the first ends the call
    assert len(server.hub) == 0
    assert server.outcome(call).check(CancelledError)
    server.log.write((b"k", b"3"))
    assert len(call.take()) == 1
    assert call.used_after_end == 0


def test_a_call_ended_while_sending_leaves_the_rest_of_the_queue_unsent() -> None:
    server = Server()
    call = server.open()
    call.create(b"k")
    call.take()
    call.stop_reading()
    for number in range(3):
        server.log.write((b"k", b"%d" % number))
    call.on_send = lambda: server.hang_up(call)
    call.resume_reading()
    assert revisions(call.take()) == [2, 3]
    assert call.used_after_end == 0 and len(server.hub) == 0


def test_a_call_ended_by_its_created_response_starts_no_watcher() -> None:
    server = Server()
    call = server.open()
    call.on_send = lambda: server.hang_up(call)
    call.create(b"k")
    assert [response.created for response in call.take()] == [True]
    assert len(server.hub) == 0
    server.log.write((b"k", b"1"))
    assert call.take() == []
    assert call.used_after_end == 0


def test_a_call_ended_while_replaying_frees_every_watcher() -> None:
    server = Server()
    for number in range(3):
        server.log.write((b"k", b"%d" % number))
    call = server.open()
    call.on_send = lambda: server.hang_up(call) if call.sent[-1].events else None
    call.create(b"k", start_revision=2)
    assert [bool(response.events) for response in call.take()] == [False, True]
    assert len(server.hub) == 0
    server.log.write((b"k", b"3"))
    assert call.take() == []


def test_a_call_ended_by_a_resumed_replay_frees_every_watcher() -> None:
    server = Server(manual=True)
    for number in range(3):
        server.log.write((b"k", b"%d" % number))
        server.log.answer()
    call = server.open()
    call.on_send = lambda: server.hang_up(call) if call.sent[-1].events else None
    call.create(b"k", start_revision=2)
    server.log.answer()  # the replay resumes, and its first response ends the call
    assert [bool(response.events) for response in call.take()] == [False, True]
    assert len(server.hub) == 0 and server.log.pending == []
    server.log.write((b"k", b"3"))
    server.log.answer()
    assert call.take() == []


def test_an_abandoned_stream_is_collected_quietly() -> None:
    """A stream whose whole world is dropped unended is closed by the garbage collector;
    its cleanup must not fail (the autouse fixture checks for unhandled errors)."""

    def abandon() -> None:
        server = Server()
        call = FakeCall()
        ensureDeferred(server.service.watch(call))
        call.create(b"k")
        call.create(b"j", start_revision=1)

    abandon()
    gc.collect()


def test_half_close_does_not_end_the_call() -> None:
    server = Server()
    call = server.open()
    call.create(b"k")
    call.request(None)
    call.take()
    server.log.write((b"k", b"1"))
    assert revisions(call.take()) == [2]
    assert server.outcome(call) is None


def test_a_compacted_start_is_created_then_cancelled_with_the_compact_revision() -> None:
    server = Server()
    for number in range(4):
        server.log.write((b"k", b"%d" % number))
    server.log.compact(3)
    call = server.open()
    call.create(b"k", start_revision=2)
    created, cancelled = call.take()
    assert created.created and created.watch_id == 0
    assert cancelled.watch_id == 0 and cancelled.canceled and cancelled.compact_revision == 3
    assert list(cancelled.events) == [] and cancelled.header.revision == 5
    assert len(server.hub) == 0


def test_every_response_carries_a_header_revision() -> None:
    server = Server(max_response_bytes=400, progress_interval=5.0)
    call = server.open()
    call.create(b"k", range_end=b"l", progress_notify=True, fragment=True)
    call.create(b"x", range_end=b"w")
    call.create(b"k", watch_id=0)
    server.log.write(*[(b"k%d" % n, b"v" * 100) for n in range(5)])
    server.clock.advance(5.0)
    server.clock.advance(5.0)
    call.progress()
    call.cancel(0)
    responses = call.take()
    assert len(responses) > 6
    assert all(response.header.revision > 0 for response in responses)


def test_progress_notifications_go_to_idle_synced_watches_that_asked() -> None:
    server = Server(progress_interval=60.0)
    call = server.open()
    call.create(b"k", progress_notify=True)
    call.create(b"j")
    call.take()
    server.clock.advance(59.0)
    assert call.take() == []
    server.clock.advance(1.0)
    [notice] = call.take()
    assert notice.watch_id == 0 and list(notice.events) == [] and notice.header.revision == 1
    assert not (notice.created or notice.canceled or notice.compact_revision)
    server.log.write((b"k", b"1"))
    call.take()
    server.clock.advance(60.0)  # an event went out since the last tick: no notice
    assert call.take() == []
    server.log.write((b"other", b"1"))
    server.clock.advance(60.0)
    [notice] = call.take()
    assert notice.watch_id == 0 and notice.header.revision == 3


def test_no_periodic_notice_while_a_watch_is_behind() -> None:
    server = Server(progress_interval=60.0, max_queue_bytes=1)
    call = server.open()
    call.create(b"k", progress_notify=True)
    call.take()
    call.stop_reading()
    for number in range(3):
        server.log.write((b"k", b"%d" % number))
    server.clock.advance(60.0)
    server.clock.advance(60.0)
    sent = call.take()
    assert all(response.events for response in sent)
    call.resume_reading()
    assert revisions(call.take()) == [2, 3, 4][len(revisions(sent)):]
    server.clock.advance(60.0)
    server.clock.advance(60.0)
    assert [response.watch_id for response in call.take()] == [0]


def test_a_progress_request_gets_one_answer_at_the_current_revision() -> None:
    server = Server()
    call = server.open()
    call.create(b"k")
    call.create(b"j")
    call.take()
    server.log.write((b"x", b"1"))
    call.progress()
    [notice] = call.take()
    assert notice.watch_id == -1 and notice.header.revision == 2 and list(notice.events) == []
    assert not (notice.created or notice.canceled)


def test_a_progress_request_catches_up_with_other_servers_first() -> None:
    """The request pokes the follower, so commits it had yet to poll for are included."""
    server = Server()
    call = server.open()
    call.create(b"k")
    call.take()
    server.log.write((b"x", b"1"), notify=False)
    server.log.write((b"k", b"1"), notify=False)
    call.progress()
    event, notice = call.take()
    assert revisions([event]) == [3]
    assert notice.watch_id == -1 and notice.header.revision == 3


def test_progress_requests_while_one_is_pending_get_one_answer() -> None:
    server = Server(manual=True)
    call = server.open()
    call.create(b"k")
    call.take()
    server.log.write((b"k", b"1"))
    for _ in range(3):
        call.progress()
    assert call.take() == []
    while server.log.pending:
        server.log.answer()
    event, notice = call.take()
    assert revisions([event]) == [2]
    assert notice.watch_id == -1 and notice.header.revision == 2
    while server.log.pending:
        server.log.answer()
    assert call.take() == []


def test_progress_waits_for_a_replaying_watch_and_never_reports_a_revision_early() -> None:
    server = Server(manual=True)
    for number in range(3):
        server.log.write((b"k", b"%d" % number))
        server.log.answer()
    call = server.open()
    call.create(b"k", start_revision=2)  # replaying: its read is in flight
    call.progress()
    feed_read = server.log.pending.pop(0)
    server.log.answer()  # the follower's sync: nothing new
    assert [response.created for response in call.take()] == [True]
    server.log.pending.insert(0, feed_read)
    server.log.answer()  # the replay: revisions 2 to 4, then the watch joins the hub
    replay, notice = call.take()
    assert revisions([replay]) == [2, 3, 4]
    assert notice.watch_id == -1 and notice.header.revision == 4


def test_progress_is_not_reported_below_what_a_watch_was_sent() -> None:
    """A replay may read past the hub; the answer waits until the hub is there too."""
    server = Server(manual=True)
    server.log.write((b"k", b"1"))
    server.log.answer()
    server.log.write((b"k", b"2"), notify=False)  # another server's commit, not yet polled
    call = server.open()
    call.create(b"k", start_revision=2)
    server.log.answer()  # the replay reads revisions 2 and 3, past the hub (2)
    created, replay = call.take()
    assert revisions([replay]) == [2, 3] and server.hub.revision == 2
    call.progress()
    server.log.answer()  # the sync brings the hub to 3
    [notice] = call.take()
    assert notice.watch_id == -1 and notice.header.revision == 3


def test_a_stream_without_watches_gets_no_progress_answer() -> None:
    server = Server()
    call = server.open()
    call.progress()
    assert call.take() == []


def test_a_slow_reader_is_bounded_and_later_caught_up_from_the_log() -> None:
    server = Server(max_queue_bytes=2000)
    slow = server.open()
    slow.create(b"k", range_end=b"l", prev_kv=True)
    fast = server.open()
    fast.create(b"k", range_end=b"l")
    slow.take(), fast.take()
    slow.stop_reading()
    for number in range(200):
        server.log.write((b"k%03d" % (number % 10), b"v" * 100))
    # The fast client got every revision live, one response each.
    assert [revisions([response]) for response in fast.take()] == [[revision] for revision in range(2, 202)]
    # The slow one was handed one response; a bounded few wait; its watch left the hub.
    stalled = slow.take()
    assert len(stalled) == 1
    assert server.streams[slow].outbox.size <= 2000 + 400
    assert len(server.hub) == 1
    reads = len(server.log.reads)
    slow.resume_reading()
    caught_up = slow.take()
    assert len(server.log.reads) > reads  # the rest came from the log
    assert revisions(stalled + caught_up) == list(range(2, 202))
    assert all(
        event.HasField("prev_kv") == (event.kv.create_revision != event.kv.mod_revision)
        for response in caught_up
        for event in response.events
    )
    assert len(server.hub) == 2
    server.log.write((b"k000", b"w"))
    assert revisions(slow.take()) == [202] and revisions(fast.take()) == [202]


def test_the_queue_stays_bounded_while_the_client_does_not_read() -> None:
    server = Server(max_queue_bytes=5000)
    call = server.open()
    call.create(b"k", range_end=b"l")
    call.take()
    call.stop_reading()
    sizes = queued_sizes(server.streams[call].outbox)
    for number in range(500):
        server.log.write((b"k%03d" % number, b"v" * 200))
    response_size = 300
    assert max(sizes) < 5000 + response_size
    assert len(sizes) < 30 and call.sent_bytes < response_size


def test_requests_wait_while_the_queue_is_full() -> None:
    server = Server(max_queue_bytes=100)
    call = server.open()
    call.stop_reading()
    for number in range(10):
        call.create(b"k%d" % number)
    created = len(server.hub)
    assert 1 < created < 10
    call.resume_reading()
    assert len(server.hub) == 10
    assert [response.watch_id for response in call.take()] == list(range(10))


def test_a_slow_reader_overtaken_by_compaction_is_cancelled() -> None:
    server = Server(max_queue_bytes=500)
    call = server.open()
    call.create(b"k", range_end=b"l")
    call.take()
    call.stop_reading()
    for number in range(50):
        server.log.write((b"k%02d" % number, b"v" * 100))
    server.log.compact(40)
    call.resume_reading()
    responses = call.take()
    cancelled = responses[-1]
    assert cancelled.canceled and cancelled.compact_revision == 40 and cancelled.watch_id == 0
    assert revisions(responses) == list(range(2, 2 + len(revisions(responses))))
    assert len(server.hub) == 0


def test_an_unreachable_store_ends_the_call_with_etcds_error() -> None:
    server = Server()
    call = server.open()
    server.log.down = True
    call.create(b"k")
    failure = server.outcome(call)
    assert isinstance(failure, Failure) and failure.check(GRPCError)
    assert failure.value.code == StatusCode.UNAVAILABLE
    assert failure.value.message == "etcdserver: request timed out"


def test_a_failed_replay_ends_the_call_with_etcds_error() -> None:
    server = Server()
    server.log.write((b"k", b"1"))
    call = server.open()
    call.create(b"j")
    server.log.fail_next_read()
    call.create(b"k", start_revision=1)
    failure = server.outcome(call)
    assert isinstance(failure, Failure) and failure.value.code == StatusCode.UNAVAILABLE
    assert len(server.hub) == 0


def test_a_thousand_watchers_on_one_server() -> None:
    server = Server()
    calls = [server.open() for _ in range(100)]
    for number, call in enumerate(calls):
        for watch in range(10):
            call.create(b"/registry/pods/" if watch % 2 else b"/registry/pods/p%d" % number, range_end=b"/registry/pods0" if watch % 2 else b"")
        call.take()
    assert len(server.hub) == 1000
    server.log.write((b"/registry/pods/p7", b"v"))
    received = [len(call.take()) for call in calls]
    assert received == [10 if number == 7 else 5 for number in range(100)]
    for call in calls:
        server.hang_up(call)
    assert len(server.hub) == 0


def test_encoded_events_are_shared_and_bounded() -> None:
    cache = EncodedEvents(max_bytes=8 * 200)
    event = Event(EventType.PUT, KeyValue(b"k", 2, 2, 1, b"v"), None)
    first = cache.field(event, prev_kv=True)
    assert cache.field(event, prev_kv=True) is first
    # Events are recognised by identity: an equal one read separately encodes alike.
    equal = Event(EventType.PUT, KeyValue(b"k", 2, 2, 1, b"v"), None)
    assert cache.field(equal, prev_kv=True) == first
    for number in range(100):
        cache.field(Event(EventType.PUT, KeyValue(b"k%d" % number, 2, 2, 1, b"v" * 50)), prev_kv=False)
    assert cache.field(event, prev_kv=True) is not first
    assert rpc_pb2.WatchResponse.FromString(first).events[0].kv.key == b"k"


def test_event_responses_are_encoded_as_protobuf_encodes_them() -> None:
    service = Server().service
    for revision in (1, 300, 2**40):
        for watch_id in (0, 1, 5000, -7, 2**62):
            for fragment in (False, True):
                expected = rpc_pb2.WatchResponse(header=IDENTITY.header(revision), watch_id=watch_id, fragment=fragment)
                assert service.event_head(revision, watch_id, fragment) == expected.SerializeToString()


def test_watches_of_a_slow_stream_catch_up_with_shared_reads_and_a_bounded_queue() -> None:
    """All the watches of a stream fall behind together: they read the log together, and
    the queue holds at most one replayed batch more than its limit."""
    limit = 20_000
    server = Server(manual=True, max_queue_bytes=limit, batch_size=100)
    call = server.open()
    for _ in range(50):
        call.create(b"k", range_end=b"l")
    call.take()
    call.stop_reading()
    sizes = queued_sizes(server.streams[call].outbox)
    written = []
    for number in range(300):
        written.append(server.log.write((b"k%02d" % (number % 20), b"v" * 100)))
        server.log.answer()
    reads = len(server.log.reads)
    # The client reads in bursts: all that is queued, then nothing while the replays read.
    for _ in range(100):
        call.resume_reading()
        call.stop_reading()
        if not server.log.pending:
            break
        while server.log.pending:
            server.log.answer()
    received: dict[int, list[int]] = {}
    for response in call.take():
        received.setdefault(response.watch_id, []).extend(event.kv.mod_revision for event in response.events)
    assert received == dict.fromkeys(range(50), written)
    assert len(server.hub) == 50
    # 300 revisions in batches of 100: each batch is read once by each group of watches
    # that resumed together (two or three), not once per watch (50).
    assert len(server.log.reads) - reads <= 3 * 3
    batch = 100 * 250
    assert max(sizes) <= limit + batch


def test_encoded_events_hold_no_more_memory_than_their_bound() -> None:
    """The bound counts what a kept event holds, not only its encoding (small events took ten
    times the bound: the robustness soak's server grew by 50 MB in 10 minutes)."""
    cache = EncodedEvents(max_bytes=1024 * 1024)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(20_000):
            prev = KeyValue(b"/registry/pods/p%02d" % (number % 15), 5, number + 1, 2, b"c1-%d" % number)
            event = Event(EventType.PUT, KeyValue(prev.key, 5, number + 2, 3, b"c1-%d" % (number + 1)), prev)
            cache.field(event, prev_kv=True)
        del event, prev
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.3 * 1024 * 1024
