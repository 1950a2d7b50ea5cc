"""Several servers on one database as one cluster: the member registry and the peer channel.

``registry`` keeps this server's row in the database's member registry (heartbeats,
expiry) and the view of the live members; ``peers`` carries commit signals between the
servers over the small authenticated protocol of ``wire``; ``endpoints`` turns peer URLs
into endpoints and listening ports into URLs; ``process`` says where this process runs.
See docs/ha.md.
"""
