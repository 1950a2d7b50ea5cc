"""Moving data into and out of k8s-sql: from a running etcd, between databases, through dump files.

A copy reads a *snapshot* (every live key at one revision, and the leases) from an
``ISnapshotSource`` (``EtcdSource``, ``StoreSource``, ``DumpReader``) and writes it to an
``ISnapshotSink`` (``StoreSink``, ``DumpWriter``), keeping keys, values, revisions,
versions and leases.  ``k8s-sql-migrate`` (``k8s_sql.migrate.cli``) is the command line;
see ``docs/migration.md``.
"""
