"""Several worker processes per server, so that one server uses every core.

``--workers N`` (or ``auto``, one per core) makes the command a supervisor
(``supervisor.WorkerSupervisor``) that listens on the client ports, accepts connections and
hands each to one of N worker processes in turn (``handoff``); each worker
(``worker.main``) is a complete k8s-sql server on the same database.  Over a control
channel (``channel``) a worker reports that it is ready, tells its siblings of every
commit it makes so that their watches see it at once, and answers for the metrics and
health pages the supervisor serves (``metrics``).  The supervisor restarts a worker that
dies and, on SIGTERM, drains them all.  See docs/workers.md.
"""
