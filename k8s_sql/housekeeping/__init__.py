"""The server's periodic jobs on the database: lease expiry (``sweeper``) and auto-compaction
(``compactor``).

Each is a Twisted service driven by an injected clock; each run is a store call whose
failure is logged and retried on the next tick, and several servers sharing a database may
run them at once (the store makes each expiry and compaction happen once).
"""
