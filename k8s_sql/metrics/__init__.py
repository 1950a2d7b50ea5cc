"""Prometheus metrics and health checks of a k8s-sql server, served over HTTP.

* ``collectors``: every metric of one server, in a registry of its own;
* ``calls``: a method registry that counts gRPC calls by method as they start and end;
* ``health``: whether the database answers, with a timeout;
* ``web``: the HTTP site: ``/metrics``, ``/health``, ``/readyz`` and ``/livez``.

``docs/metrics.md`` lists the metrics.
"""
