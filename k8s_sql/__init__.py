"""k8s-sql: the etcd v3 API for Kubernetes, served from a SQL database."""

__version__ = "0.1.0"
