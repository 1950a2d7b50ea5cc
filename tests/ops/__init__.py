"""Tests of running k8s-sql like a real etcd: command line, TLS, metrics, auto-compaction, embedding, docs."""
