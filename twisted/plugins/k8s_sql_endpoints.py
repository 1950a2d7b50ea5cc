"""Endpoint description plugins of k8s-sql: ``h2tls:`` (TLS with ALPN "h2" over any endpoint)."""

from k8s_sql.grpc.tls import TLSEndpointParser

h2tls = TLSEndpointParser()
