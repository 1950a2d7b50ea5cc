"""The ``ResponseHeader`` every etcd response carries."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from k8s_sql.proto import rpc_pb2


def member_id(cluster_id: int, name: str) -> int:
    """A stable, positive 64-bit member ID for the member ``name`` of a cluster."""
    digest = hashlib.sha256(f"{cluster_id}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


@dataclass(frozen=True, slots=True)
class Identity:
    """Who answers: the cluster (one per database) and this server, a member of it.

    k8s-sql has no raft; ``raft_term`` is a constant 1 so that clients comparing terms see
    one stable leader.
    """

    cluster_id: int
    member_id: int
    raft_term: int = 1

    def header(self, revision: int) -> rpc_pb2.ResponseHeader:
        """A response header reporting ``revision``."""
        return rpc_pb2.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=revision,
            raft_term=self.raft_term,
        )
