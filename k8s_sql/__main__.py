"""``python -m k8s_sql``: the same as the ``k8s-sql`` console script."""

from k8s_sql.tap import main

main()
