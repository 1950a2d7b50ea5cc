"""One module per database: ``sqlite``, ``mysql``, ``postgres``, each with a ``Dialect``.

Modules are imported on demand, so a database driver is needed only when its database is used.
"""
