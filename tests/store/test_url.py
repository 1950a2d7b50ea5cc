"""Database URLs."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from k8s_sql.store.pool import Database
from k8s_sql.store.url import DEFAULT_URL, DatabaseURL, redact


def test_sqlite_paths_follow_sqlalchemys_convention() -> None:
    assert DatabaseURL.parse("sqlite:///data/k8s.db").database == "data/k8s.db"
    assert DatabaseURL.parse("sqlite:////var/lib/k8s.db").database == "/var/lib/k8s.db"
    assert DatabaseURL.parse(DEFAULT_URL).database == "k8s-sql.db"
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/path"):
        with pytest.raises(ValueError):
            DatabaseURL.parse(bad)


def test_server_urls() -> None:
    url = DatabaseURL.parse("mysql://k8s:s%40cret@db.example:3307/kube?readers=8&ssl_ca=/ca.pem")
    assert (url.backend, url.user, url.password, url.host, url.port, url.database) == (
        "mysql", "k8s", "s@cret", "db.example", 3307, "kube",
    )
    assert url.integer("readers", 4) == 8 and url.integer("writers", 4) == 4
    assert url.driver_options(frozenset({"ssl_ca"})) == {"ssl_ca": "/ca.pem"}
    assert DatabaseURL.parse("postgresql://u@h/d").backend == DatabaseURL.parse("postgres://u@h/d").backend == "postgres"


def test_bad_urls_and_options_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        DatabaseURL.parse("oracle://u:p@h/d")
    with pytest.raises(ValueError, match="host and a database"):
        DatabaseURL.parse("mysql://u:p@h")
    with pytest.raises(ValueError, match="positive integer"):
        DatabaseURL.parse("mysql://h/d?readers=0").integer("readers", 4)
    with pytest.raises(ValueError, match="unknown mysql database URL option"):
        DatabaseURL.parse("mysql://h/d?sslmode=on").driver_options(frozenset())


def test_passwords_never_show() -> None:
    url = DatabaseURL.parse("postgres://admin:hunter2@db:5432/kube")
    assert str(url) == "postgres://admin@db:5432/kube"
    assert "hunter2" not in repr(url)
    assert redact("mysql://admin:hunter2@db/kube") == "mysql://admin:***@db/kube"
    with pytest.raises(ValueError) as refused:
        DatabaseURL.parse("oracle://admin:hunter2@db/kube")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("url", "writers", "readers"), [
    ("sqlite:///k8s.db", 1, 2),
    ("sqlite:///k8s.db?readers=5", 1, 5),
    ("mysql://root@db/k8s", 4, 4),
    ("postgres://k8s@db/k8s?writers=2&readers=8", 2, 8),
])
def test_pool_sizes_come_from_the_url_or_the_dialect(url: str, writers: int, readers: int) -> None:
    database = Database(DatabaseURL.parse(url), MemoryReactorClock())
    assert (database._writer.max, database._reader.max) == (writers, readers)
