"""Durations as the command line spells them."""

from __future__ import annotations

import pytest

from k8s_sql.durations import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("1.5", 1.5), ("0", 0.0), (".5", 0.5), ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
    ("1h30m", 5400.0), ("1.5h", 5400.0), ("250us", 0.00025), ("100ns", 1e-7), (" 2s ", 2.0),
])
def test_parses_go_durations_and_bare_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_a_bare_number_counts_in_the_unit_given() -> None:
    assert parse_duration("2", unit="h") == 7200.0
    assert parse_duration("2m", unit="h") == 120.0


@pytest.mark.parametrize("text", ["", "abc", "1x", "s", "1h foo", "-1s", "1s2", "h1"])
def test_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(3600.0, "1h"), (7200.0, "2h"), (300.0, "5m"), (90.0, "90s"),
                                               (0.5, "0.5s"), (1.0, "1s")])
def test_formats_briefly_and_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
