"""Fixtures of the cluster tests."""

from __future__ import annotations

import pytest

from tests.grpc.support import Certificates, make_certificates


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, a peer certificate for 127.0.0.1 (server and client use), and a stranger's (another CA)."""
    return make_certificates(tmp_path_factory.mktemp("certificates"))
