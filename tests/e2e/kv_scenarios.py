"""Scripted KV request sequences, each run against a fresh etcd and a fresh k8s-sql.

Revisions in the scripts are absolute: a fresh etcd is at revision 1 and its first write
takes revision 2, and so must k8s-sql.
"""

from __future__ import annotations

from k8s_sql.proto import rpc_pb2

from tests.differential import Step

Cmp = rpc_pb2.Compare
RR = rpc_pb2.RangeRequest


def put(key: bytes, value: bytes = b"v", **fields: object) -> Step:
    return ("Put", rpc_pb2.PutRequest(key=key, value=value, **fields))


def get(key: bytes, range_end: bytes = b"", **fields: object) -> Step:
    return ("Range", rpc_pb2.RangeRequest(key=key, range_end=range_end, **fields))


def delete(key: bytes, range_end: bytes = b"", **fields: object) -> Step:
    return ("DeleteRange", rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end, **fields))


def compact(revision: int, physical: bool = False) -> Step:
    return ("Compact", rpc_pb2.CompactionRequest(revision=revision, physical=physical))


def op(step: Step) -> rpc_pb2.RequestOp:
    """The RequestOp for a Range, Put, DeleteRange or Txn step."""
    field = {"Range": "request_range", "Put": "request_put", "DeleteRange": "request_delete_range", "Txn": "request_txn"}
    return rpc_pb2.RequestOp(**{field[step[0]]: step[1]})


def txn(compares: list[rpc_pb2.Compare], success: list[Step] = (), failure: list[Step] = ()) -> Step:  # type: ignore[assignment]
    return (
        "Txn",
        rpc_pb2.TxnRequest(compare=compares, success=[op(s) for s in success], failure=[op(s) for s in failure]),
    )


def cmp(key: bytes, target: str, result: str, value: object, range_end: bytes = b"") -> rpc_pb2.Compare:
    """A compare, e.g. ``cmp(b"k", "MOD", "EQUAL", 0)``."""
    operand = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision", "VALUE": "value", "LEASE": "lease"}[target]
    return rpc_pb2.Compare(
        key=key,
        range_end=range_end,
        target=Cmp.CompareTarget.Value(target),
        result=Cmp.CompareResult.Value(result),
        **{operand: value},
    )


def basics() -> list[Step]:
    return [
        get(b"missing"),
        put(b"a", b"1"),
        put(b"b", b"2"),
        put(b"a", b"3", prev_kv=True),
        put(b"a", b"3"),
        get(b"a"),
        get(b"a", b"c"),
        get(b"\x00", b"\x00"),
        get(b"b", b"\x00"),
        get(b"", b""),
        put(b"", b"x"),
        put(b"bin\x00\xff", b"\x00\xff\x01"),
        get(b"bin\x00", b"bin\x01"),
        put(b"\xff\xff", b"top"),
        get(b"\xff", b"\x00"),
    ]


def listing() -> list[Step]:
    keys = [b"/registry/pods/ns/p%02d" % i for i in range(12)]
    steps = [put(k, b"value-%d" % i) for i, k in enumerate(keys)]
    steps += [put(keys[3], b"again"), put(keys[7], b"again"), put(b"/registry/pods0", b"outside")]
    prefix, end = b"/registry/pods/", b"/registry/pods0"
    steps += [
        get(prefix, end),
        get(prefix, end, limit=5),
        get(keys[4] + b"\x00", end, limit=5),
        get(prefix, end, limit=5, revision=6),
        get(prefix, end, count_only=True),
        get(prefix, end, keys_only=True, limit=3),
        get(prefix, end, limit=1),
        get(prefix, end, sort_order=RR.DESCEND, limit=4),
        get(prefix, end, sort_target=RR.MOD, sort_order=RR.DESCEND, limit=3),
        # etcd sorts with Go's unstable sort: only orders without ties are comparable
        get(prefix, end, sort_target=RR.CREATE, sort_order=RR.DESCEND),
        get(prefix, end, sort_target=RR.VALUE, sort_order=RR.DESCEND, limit=2),
        get(prefix, end, sort_target=RR.MOD),
        get(prefix, end, min_mod_revision=10),
        get(prefix, end, max_mod_revision=5, limit=2),
        get(prefix, end, min_create_revision=4, max_create_revision=8),
        get(prefix, end, revision=100),
        get(prefix, end, revision=-1, limit=2),
    ]
    return steps


def deletes() -> list[Step]:
    return [
        put(b"k1", b"a"),
        put(b"k2", b"b"),
        put(b"k3", b"c"),
        put(b"k2", b"b2"),
        delete(b"k2", prev_kv=True),
        delete(b"k2"),
        get(b"k", b"l"),
        put(b"k2", b"reborn"),
        get(b"k2"),
        delete(b"k", b"l", prev_kv=True),
        delete(b"k", b"l"),
        get(b"k", b"l", revision=5),
        get(b"k", b"l", revision=7),
        delete(b"\x00", b"\x00"),
        delete(b""),
    ]


def transactions() -> list[Step]:
    return [
        # kube-apiserver's create, update, delete and compactor shapes
        txn([cmp(b"/r/x", "MOD", "EQUAL", 0)], [put(b"/r/x", b"v1")]),
        txn([cmp(b"/r/x", "MOD", "EQUAL", 0)], [put(b"/r/x", b"v1")]),
        txn([cmp(b"/r/x", "MOD", "EQUAL", 2)], [put(b"/r/x", b"v2")], [get(b"/r/x")]),
        txn([cmp(b"/r/x", "MOD", "EQUAL", 2)], [put(b"/r/x", b"v3")], [get(b"/r/x")]),
        txn([cmp(b"/r/x", "MOD", "EQUAL", 3)], [delete(b"/r/x")], [get(b"/r/x")]),
        txn([cmp(b"compact_rev_key", "VERSION", "EQUAL", 0)], [put(b"compact_rev_key", b"3")], [get(b"compact_rev_key")]),
        txn([cmp(b"compact_rev_key", "VERSION", "EQUAL", 1)], [put(b"compact_rev_key", b"4")], [get(b"compact_rev_key")]),
        # every target and relation
        put(b"t", b"m"),
        txn([cmp(b"t", "VALUE", "EQUAL", b"m")], [get(b"t")]),
        txn([cmp(b"t", "VALUE", "GREATER", b"a"), cmp(b"t", "VALUE", "LESS", b"z")], [get(b"t")]),
        txn([cmp(b"t", "VALUE", "NOT_EQUAL", b"m")], [get(b"t")], [get(b"nope")]),
        txn([cmp(b"missing", "VALUE", "EQUAL", b"")], [get(b"t")], [get(b"t")]),
        txn([cmp(b"missing", "VALUE", "NOT_EQUAL", b"x")], [get(b"t")], [get(b"t")]),
        txn([cmp(b"missing", "VERSION", "EQUAL", 0), cmp(b"missing", "CREATE", "LESS", 1)], [get(b"t")]),
        txn([cmp(b"t", "VERSION", "GREATER", 0), cmp(b"t", "CREATE", "NOT_EQUAL", 0)], [get(b"t")]),
        txn([cmp(b"t", "MOD", "LESS", 100), cmp(b"t", "LEASE", "EQUAL", 0)], [get(b"t")]),
        txn([cmp(b"t", "LEASE", "GREATER", 0)], [get(b"t")], [get(b"t", keys_only=True)]),
        # range compares
        put(b"rc/1", b"1"),
        put(b"rc/2", b"1"),
        txn([cmp(b"rc/", "VALUE", "EQUAL", b"1", range_end=b"rc0")], [put(b"rc/3", b"1")]),
        txn([cmp(b"rc/", "VALUE", "EQUAL", b"1", range_end=b"rc0")], [put(b"rc/3", b"2")]),
        txn([cmp(b"rc/", "VALUE", "EQUAL", b"1", range_end=b"rc0")], [put(b"rc/4", b"1")], [get(b"rc/", b"rc0")]),
        txn([cmp(b"rc/", "MOD", "GREATER", 0, range_end=b"rc0")], [get(b"rc/", b"rc0", count_only=True)]),
        txn([cmp(b"none/", "MOD", "GREATER", 0, range_end=b"none0")], [get(b"t")], [get(b"t")]),
        # writes and reads in one branch, nested transactions, read-only transactions
        txn([], [put(b"w1", b"a"), get(b"w1"), put(b"w2", b"b"), delete(b"t"), get(b"t")]),
        txn([], [get(b"w1"), get(b"w2")]),
        txn([], [delete(b"nothing"), get(b"w1")]),
        txn([], [get(b"w1"), delete(b"nothing"), put(b"w3", b"c"), get(b"w", b"x")]),
        txn(
            [cmp(b"w1", "VERSION", "EQUAL", 1)],
            [txn([cmp(b"w2", "VALUE", "EQUAL", b"b")], [put(b"n1", b"x"), get(b"n1")], [get(b"w2")]), put(b"n2", b"y")],
            [get(b"w1")],
        ),
        txn(
            [cmp(b"w1", "VERSION", "EQUAL", 5)],
            [put(b"n3", b"x")],
            [txn([cmp(b"w2", "VALUE", "EQUAL", b"zzz")], [put(b"n4", b"x")], [get(b"w2"), delete(b"n2", prev_kv=True)])],
        ),
        txn([], [put(b"p", b"1", prev_kv=True), put(b"q", b"1", prev_kv=True)]),
        txn([], [delete(b"w", b"x", prev_kv=True), get(b"w", b"x")]),
        get(b"\x00", b"\x00", keys_only=True),
    ]


def txn_errors() -> list[Step]:
    return [
        put(b"d", b"1"),
        txn([], [put(b"dup", b"1"), put(b"dup", b"2")]),
        txn([], [put(b"dup", b"1"), delete(b"dup")]),
        txn([], [delete(b"da", b"dz"), put(b"dm", b"1")]),
        txn([], [delete(b"dup"), delete(b"dup")]),
        txn([], [put(b"dup", b"1")], [put(b"dup", b"2")]),
        txn([], [put(b"dup", b"1"), txn([], [put(b"dup", b"2")])]),
        txn([], [txn([], [put(b"n", b"1")]), txn([], [put(b"n", b"2")])]),
        txn([], [txn([cmp(b"d", "VERSION", "EQUAL", 1)], [put(b"n", b"1")], [put(b"n", b"2")])]),
        txn([], [put(b"m%d" % i, b"x") for i in range(128)]),
        txn([], [put(b"m%d" % i, b"x") for i in range(129)]),
        txn([], [get(b"")]),
        txn([], [put(b"", b"x")]),
        txn([], [get(b"d", revision=1000)]),
        txn([], [put(b"new", b"1", ignore_value=True)]),
        get(b"\x00", b"\x00", count_only=True),
    ]


def put_options() -> list[Step]:
    return [
        put(b"o", b"1"),
        put(b"o", b"", ignore_value=True),
        put(b"o", b"x", ignore_value=True),
        put(b"missing", b"", ignore_value=True),
        put(b"o", b"2", ignore_lease=True),
        put(b"o", b"2", lease=5, ignore_lease=True),
        put(b"missing", b"3", ignore_lease=True),
        put(b"o", b"2", lease=12345),
        put(b"o", b"", ignore_value=True, ignore_lease=True, prev_kv=True),
        get(b"o"),
        put(b"big", b"x" * (1536 * 1024 + 1)),
        put(b"big", b"x" * (1024 * 1024)),
        get(b"big", keys_only=True),
    ]


def probed_edges() -> list[Step]:
    """Requests a probe found answered differently from etcd 3.5.1."""
    everything = 2**63 - 1
    return [
        put(b"a", b"1"),
        put(b"b", b"2"),
        put(b"c", b"3"),
        put(b"a", b"4"),
        get(b"a", b"z", limit=everything),
        get(b"a", b"z", limit=everything, revision=3),
        get(b"a", b"z", limit=everything - 1, count_only=True),
        txn([], [get(b"a", b"z", limit=everything)]),
        get(b"a", b"z", sort_order=7),
        get(b"a", b"z", sort_order=7, limit=2),
        get(b"a", b"z", sort_order=-1, sort_target=RR.VALUE, limit=2),
        txn([], [get(b"a", b"z", sort_order=3, limit=1)]),
    ]


def compaction() -> list[Step]:
    return [
        put(b"c", b"1"),
        put(b"c", b"2"),
        put(b"d", b"1"),
        delete(b"d"),
        put(b"c", b"3"),
        compact(0),
        compact(10),
        compact(4),
        get(b"c", revision=3),
        get(b"c", revision=4),
        get(b"d", revision=4),
        get(b"c", revision=5),
        compact(4),
        compact(3),
        compact(6, physical=True),
        get(b"c", revision=5),
        get(b"c", revision=6),
        get(b"\x00", b"\x00"),
        txn([], [get(b"c", revision=5)]),
        put(b"c", b"4"),
        get(b"c"),
    ]


SCENARIOS = {
    "basics": basics,
    "listing": listing,
    "deletes": deletes,
    "transactions": transactions,
    "txn_errors": txn_errors,
    "put_options": put_options,
    "compaction": compaction,
    "probed_edges": probed_edges,
}
