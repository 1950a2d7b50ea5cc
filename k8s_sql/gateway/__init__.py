"""etcd's JSON gateway and HTTP pages on the client port, beside gRPC.

``sniff`` tells HTTP/2 connections from HTTP/1.1 ones; ``site`` serves the latter with
twisted.web: ``/v3/...`` through ``call.GatewayCall`` (the registered gRPC handlers,
with JSON in and out as ``jsonpb`` maps it), ``/version``, and the health and metrics
pages; ``port.ClientPort`` puts them together for ``--listen``.  See ``docs/gateway.md``.
"""
