"""Database URLs: which backend, where, and with which options.

* ``sqlite:///relative/path`` and ``sqlite:////absolute/path`` (SQLAlchemy's convention);
* ``mysql://user:password@host:port/database``;
* ``postgres://user:password@host:port/database`` (``postgresql://`` too).

Query-string options tune the store (``STORE_OPTIONS``); the dialect hands the others to
its database driver where it knows them, and refuses the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

DEFAULT_URL = "sqlite:///k8s-sql.db"

STORE_OPTIONS = frozenset({"readers", "writers", "connect_timeout"})

_SCHEMES = {"sqlite": "sqlite", "mysql": "mysql", "postgres": "postgres", "postgresql": "postgres"}


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed database URL.

    ``database`` is the database name, or for SQLite the file's path; ``options`` holds the
    query-string options.
    """

    backend: str
    database: str
    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = field(default="", repr=False)
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> DatabaseURL:
        """Parse ``text``; raise ``ValueError`` naming what is wrong with it."""
        parts = urlsplit(text)
        backend = _SCHEMES.get(parts.scheme)
        if backend is None:
            raise ValueError(f"unsupported database URL {redact(text)!r}: use sqlite:///, mysql:// or postgres://")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        if backend == "sqlite":
            if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
                raise ValueError(f"bad SQLite URL {text!r}: use sqlite:///relative/path or sqlite:////absolute/path")
            return cls(backend, parts.path[1:], options=options)
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database:
            raise ValueError(f"bad database URL {redact(text)!r}: it needs a host and a database name")
        return cls(
            backend,
            database,
            host=parts.hostname,
            port=parts.port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            options=options,
        )

    def integer(self, name: str, default: int) -> int:
        """Option ``name`` as a positive integer, ``default`` when absent."""
        text = self.options.get(name)
        if text is None:
            return default
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"database URL option {name}={text!r} must be a positive integer")
        return int(text)

    def driver_options(self, known: frozenset[str]) -> dict[str, str]:
        """The options meant for the driver; ``ValueError`` for one neither it nor the store knows."""
        rest = {name: value for name, value in self.options.items() if name not in STORE_OPTIONS}
        unknown = sorted(set(rest) - known)
        if unknown:
            raise ValueError(f"unknown {self.backend} database URL option(s): {', '.join(unknown)}")
        return rest

    def __str__(self) -> str:
        """The URL without its password, fit for messages and logs."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.database}"
        credentials = f"{quote(self.user, safe='')}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.backend}://{credentials}{self.host}{port}/{quote(self.database, safe='')}"


def redact(text: str) -> str:
    """``text`` with any password in it replaced by ``***``."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
