"""Lease expiry: the sweeper that revokes leases whose deadline has passed.

The lease rows themselves live in the store (``ILeaseStore``); the etcd ``Lease`` service
is ``k8s_sql.etcd.lease``.
"""
