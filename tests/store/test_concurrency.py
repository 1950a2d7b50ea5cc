"""Many writers on several independent stores sharing one database.

Each store has its own connection pools, as separate k8s-sql servers would.  Revisions must
come out contiguous and unique, compare-and-swap must lose no update, a reader tailing the
change feed must see every revision in order, and racing lease sweepers must revoke each
lease once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from k8s_sql.store.model import Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest

STORES = 3
WORKERS = 4
WRITES = 20


async def increment(store: Any, key: bytes) -> int:
    """Add one to the counter at ``key`` by compare-and-swap; return the attempts it took."""
    attempts = 0
    while True:
        attempts += 1
        current = await store.range(RangeRequest(key))
        value = int(current.kvs[0].value) if current.kvs else 0
        mod = current.kvs[0].mod_revision if current.kvs else 0
        guard = Compare(CompareTarget.MOD, CompareResult.EQUAL, key, mod)
        response = await store.txn(TxnRequest((guard,), (PutRequest(key, b"%d" % (value + 1)),)))
        if response.succeeded:
            return attempts


async def hammer(stores: list[Any]) -> tuple[list[int], list[int], int]:
    """Run every worker at once, and a reader tailing the feed; return what they saw."""
    done = False
    seen: list[int] = []

    async def worker(store: Any, number: int) -> list[int]:
        revisions = []
        for index in range(WRITES):
            if index % 4 == 3:
                await increment(store, b"counter")
            else:
                response = await store.put(PutRequest(b"key/%d/%d" % (number, index % 3), b"%d" % index))
                revisions.append(response.revision)
        return revisions

    async def follow(store: Any) -> None:
        after = 1
        while True:
            finished = done
            events = await store.changes(after, 7)
            for event in events:
                if not seen or seen[-1] != event.kv.mod_revision:
                    seen.append(event.kv.mod_revision)
            after = seen[-1] if seen else after
            if finished and not events:
                return

    follower = defer.ensureDeferred(follow(stores[0]))
    workers = [
        defer.ensureDeferred(worker(store, number * STORES + index))
        for index, store in enumerate(stores)
        for number in range(WORKERS)
    ]
    revisions = [revision for result in await defer.gatherResults(workers) for revision in result]
    done = True
    await follower
    return revisions, seen, await stores[0].current_revision()


def test_writers_on_several_stores_get_contiguous_unique_revisions(run: Any, store: Any, opener: Any) -> None:
    stores = [store] + [opener() for _ in range(STORES - 1)]
    revisions, seen, current = run(hammer, stores, timeout=240)
    increments = STORES * WORKERS * (WRITES // 4)
    assert len(set(revisions)) == len(revisions) == STORES * WORKERS * WRITES - increments
    assert seen == list(range(2, current + 1))
    assert current == 1 + len(revisions) + increments
    counter = run(store.range, RangeRequest(b"counter")).kvs[0]
    assert (int(counter.value), counter.version) == (increments, increments)
    events = run(store.changes, 1, 10_000)
    assert [event.kv.mod_revision for event in events] == list(range(2, current + 1))


def test_racing_sweepers_revoke_each_lease_once(run: Any, store: Any, opener: Any) -> None:
    stores = [store] + [opener() for _ in range(STORES - 1)]
    for lease_id in range(1, 13):
        run(store.lease_grant, lease_id, 10, 100.0)
        run(store.put, PutRequest(b"leased/%d" % lease_id, lease=lease_id))
    before = run(store.current_revision)

    async def sweep_all() -> list[list[int]]:
        return await defer.gatherResults([s.expire_leases(200.0, 100) for s in stores for _ in range(2)])

    revoked = [lease_id for sweep in run(sweep_all, timeout=120) for lease_id in sweep]
    assert sorted(revoked) == list(range(1, 13))
    assert run(store.current_revision) == before + 12
    assert run(store.range, RangeRequest(b"leased/", b"leased0", count_only=True)).count == 0


def test_writes_arriving_together_share_a_transaction_and_keep_their_own_answers(run: Any, store: Any) -> None:
    names: list[str] = []
    store.database.observe_transactions(lambda writer, name, seconds, error: names.append(name))
    run(store.put, PutRequest(b"b", b"old"))

    async def together() -> list[Any]:
        requests = [
            store.put(PutRequest(b"a", b"1")),
            store.put(PutRequest(b"c", lease=99)),  # unknown lease: refused alone
            store.txn(TxnRequest(success=(PutRequest(b"a", b"2", prev_kv=True), PutRequest(b"b", b"new")))),
            store.delete_range(DeleteRangeRequest(b"nothing")),
            # Keeps the lease of b, deleted before it in the same transaction: refused alone.
            store.txn(TxnRequest(success=(DeleteRangeRequest(b"b", b"\0"), PutRequest(b"b", ignore_lease=True)))),
            store.put(PutRequest(b"d", b"4")),
        ]
        return await defer.DeferredList(requests, consumeErrors=True)

    outcomes = run(together)
    answers = [result if ok else type(result.value).__name__ for ok, result in outcomes]
    assert answers[1] == "LeaseNotFound" and answers[4] == "KeyNotFound"
    assert answers[0].revision == 3
    assert answers[2].revision == 4 and answers[2].responses[0].prev_kv.value == b"1"
    assert answers[3].revision == 4 and answers[3].deleted == 0
    assert answers[5].revision == 5
    assert any(name.endswith("_batched") for name in names)
    assert [event.kv.mod_revision for event in run(store.changes, 1, 100)] == [2, 3, 4, 4, 5]
    assert [kv.value for kv in run(store.range, RangeRequest(b"a", b"z")).kvs] == [b"2", b"new", b"4"]


def test_a_write_batched_after_a_snapshot_load_follows_its_revision(run: Any, store: Any) -> None:
    run(store.put, PutRequest(b"old"))

    async def together() -> list[Any]:
        return await defer.gatherResults([store.put(PutRequest(b"a")), store.begin_load(100, True), store.put(PutRequest(b"b"))])

    first, start, last = run(together)
    assert (first.revision, start, last.revision) == (3, 100, 101)
    assert run(store.current_revision) == 101
    assert [kv.key for kv in run(store.range, RangeRequest(b"\0", b"\0")).kvs] == [b"b"]
