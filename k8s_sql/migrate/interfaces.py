"""The two ends of a copy: where a snapshot is read from and where it is written.

Methods are coroutines (``async def``), awaited by ``k8s_sql.migrate.copy``; their failures
are the exceptions of the systems behind them (``GRPCError`` from etcd, the store's errors,
``DumpError`` for a damaged file).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ISnapshotSource(Interface):
    """Every live key of an etcd or k8s-sql as of one revision, and its leases."""

    description = Attribute("What the source is, for messages and dump headers (no passwords).")

    def open(revision):
        """Pin the revision to read at (0: the current one); a coroutine giving a ``SnapshotHeader``.

        Fails when ``revision`` is compacted or in the future.
        """

    def read():
        """A coroutine giving the next ``Batch``, or ``None`` after the last one."""


class ISnapshotSink(Interface):
    """Where a snapshot is written: a database or a dump file."""

    def begin(header):
        """Get ready for the snapshot ``header`` describes (a coroutine); refuses a non-empty target."""

    def add(batch):
        """Write a ``Batch`` (a coroutine); each lease before the keys that use it."""

    def finish():
        """Make everything written durable and complete (a coroutine)."""
