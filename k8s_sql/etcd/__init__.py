"""The etcd v3 services: protobuf in, store calls, protobuf out."""
