"""etcd3gw, the gateway client OpenStack uses (tooz), against k8s-sql: put, get, delete,
transactions, leases, locks and watches, all over HTTP/1.1 on the client port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import etcd3gw
import pytest
from etcd3gw.client import Etcd3Client

from tests.processes import K8sSQL


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sSQL]:
    directory: Path = tmp_path_factory.mktemp("etcd3gw")
    with K8sSQL(f"sqlite:///{directory}/k8s-sql.db") as server:
        yield server


@pytest.fixture
def client(server: K8sSQL) -> Iterator[Etcd3Client]:
    host, port = server.endpoint.rsplit(":", 1)
    client = etcd3gw.client(host=host, port=int(port), timeout=10)
    yield client
    client.session.close()


def test_the_api_version_is_discovered_from_version(client: Etcd3Client) -> None:
    assert client.api_path == "/v3/"
    assert client.status()["version"] == "3.6.15"
    (member,) = client.members()
    assert member["name"] == "default"


def test_put_get_delete(client: Etcd3Client) -> None:
    assert client.put("/gw/a", "1") is True
    assert client.put("/gw/b", b"2") is True
    assert client.get("/gw/a") == [b"1"]
    ((value, metadata),) = client.get("/gw/b", metadata=True)
    assert value == b"2" and metadata["key"] == b"/gw/b" and int(metadata["version"]) == 1
    assert sorted(value for value, _ in client.get_prefix("/gw/")) == [b"1", b"2"]
    assert client.delete("/gw/a") is True
    assert client.delete("/gw/a") is False
    assert client.get("/gw/a") == []
    assert client.delete_prefix("/gw/") is True
    assert client.get_prefix("/gw/") == []


def test_create_and_replace_are_transactions(client: Etcd3Client) -> None:
    assert client.create("/gw/created", "first") is True
    assert client.create("/gw/created", "second") is False
    assert client.replace("/gw/created", "first", "third") is True
    assert client.replace("/gw/created", "first", "fourth") is False
    assert client.get("/gw/created") == [b"third"]


def test_leases(client: Etcd3Client) -> None:
    lease = client.lease(ttl=60)
    assert 0 < lease.ttl() <= 60
    client.put("/gw/leased", "x", lease=lease)
    assert lease.keys() == [b"/gw/leased"]
    assert lease.refresh() == 60
    assert lease.revoke() is True
    assert client.get("/gw/leased") == []
    assert lease.ttl() == -1


def test_locks(client: Etcd3Client) -> None:
    first, second = client.lock("gw", ttl=30), client.lock("gw", ttl=30)
    assert first.acquire() is True
    assert first.is_acquired()
    assert second.acquire() is False
    assert first.refresh() == 30
    assert first.release() is True
    assert second.acquire() is True
    assert second.release() is True


def test_watch(client: Etcd3Client) -> None:
    events, cancel = client.watch_prefix("/gw/watched/")
    try:
        writer = threading.Timer(0.5, lambda: (client.put("/gw/watched/1", "a"), client.delete("/gw/watched/1")))
        writer.start()
        put, deleted = next(events), next(events)
        writer.join()
    finally:
        cancel()
    assert (put["kv"]["key"], put["kv"]["value"]) == (b"/gw/watched/1", b"a")
    assert "type" not in put
    assert deleted["type"] == "DELETE" and deleted["kv"]["key"] == b"/gw/watched/1"


def test_watch_once(client: Etcd3Client) -> None:
    timer = threading.Timer(0.5, client.put, ("/gw/once", "v"))
    timer.start()
    event = client.watch_once("/gw/once", timeout=10)
    timer.join()
    assert event["kv"]["value"] == b"v"
