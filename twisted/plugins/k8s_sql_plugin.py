"""The ``twistd k8s-sql`` plugin."""

from twisted.application.service import ServiceMaker

k8s_sql = ServiceMaker(
    "k8s-sql",
    "k8s_sql.tap",
    "An etcd v3 API server for Kubernetes that keeps its data in a SQL database.",
    "k8s-sql",
)
