"""gRPC over HTTP/2, on Twisted and h2.  Knows nothing of etcd."""
