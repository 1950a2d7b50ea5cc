"""etcd's snapshot files: bbolt databases with etcd's buckets, written and read by k8s-sql.

``bbolt`` is the file format (pages, elements, meta pages), ``writer`` and ``reader`` write
and read any bbolt database a page at a time, ``layout`` is etcd's use of it (buckets and
records) and ``digest`` the sha256 trailer ``etcdctl snapshot save`` appends.
"""
