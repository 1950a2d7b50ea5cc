"""The etcd v3 API messages: our ``.proto`` sources and the modules generated from them.

``rpc_pb2`` (package ``etcdserverpb``), ``kv_pb2`` (``mvccpb``), ``auth_pb2`` (``authpb``) and
``health_pb2`` (``grpc.health.v1``) keep etcd's package names, message names and field numbers.
``dump_pb2`` (``k8s_sql.dump``) holds the records of k8s-sql's dump files (``k8s_sql.migrate``).
"""
