"""``python -m k8s_sql.migrate``: the same as the ``k8s-sql-migrate`` console script."""

from k8s_sql.migrate.cli import main

main()
