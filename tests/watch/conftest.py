"""Every watch test also fails if it leaves an unhandled error in a Deferred behind."""

from __future__ import annotations

import gc
from typing import Any, Iterator

import pytest
from twisted.logger import globalLogPublisher


@pytest.fixture(autouse=True)
def no_unhandled_errors() -> Iterator[None]:
    """Collect garbage after the test and fail on any "Unhandled error in Deferred"."""
    unhandled: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "twisted.internet.defer" and "log_failure" in event:
            unhandled.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert not unhandled, [event["log_failure"].getTraceback() for event in unhandled]
