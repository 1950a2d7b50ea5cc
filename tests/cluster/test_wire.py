"""The peer protocol's two ends, fed bytes: the handshake, signed signals, and what they refuse."""

from __future__ import annotations

import pytest

from k8s_sql.cluster.wire import (
    ADMITTED,
    SIGNAL_BYTES,
    Admitted,
    Answer,
    Hello,
    ListeningEnd,
    Refused,
    SendingEnd,
    Signal,
)

SECRET = b"s" * 32
INSTANCE = 0x1234_5678_9ABC_DEF0


def handshake(secret: bytes = SECRET) -> tuple[ListeningEnd, SendingEnd, list]:
    """Both ends, the sender having answered the listener's challenge."""
    listening = ListeningEnd(SECRET, b"c" * 16)
    sending = SendingEnd(secret, INSTANCE, b"n" * 16)
    [answer] = sending.receive(listening.challenge)
    assert isinstance(answer, Answer) and sending.ready
    return listening, sending, listening.receive(answer.hello)


def test_a_sender_with_the_secret_is_heard_and_its_signals_taken_in_order() -> None:
    listening, sending, events = handshake()
    assert events == [Hello(INSTANCE)]
    signals = b"".join(sending.signal(revision) for revision in (5, 9, 2**63))
    assert listening.receive(signals) == [Signal(5), Signal(9), Signal(2**63)]
    assert sending.receive(ADMITTED) == [Admitted()]


def test_bytes_may_arrive_one_at_a_time() -> None:
    listening = ListeningEnd(SECRET, b"c" * 16)
    sending = SendingEnd(SECRET, INSTANCE, b"n" * 16)
    answers = [event for byte in listening.challenge for event in sending.receive(bytes([byte]))]
    assert len(answers) == 1
    stream = answers[0].hello + sending.signal(7)
    events = [event for byte in stream for event in listening.receive(bytes([byte]))]
    assert events == [Hello(INSTANCE), Signal(7)]


def test_a_hello_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(Refused, match="not signed with this database's peer secret"):
        handshake(b"x" * 32)


def test_another_protocol_is_refused_at_its_first_byte() -> None:
    with pytest.raises(Refused, match="not the peer protocol"):
        ListeningEnd(SECRET, b"c" * 16).receive(b"GET / HTTP/1.1\r\n")
    with pytest.raises(Refused, match="does not speak the peer protocol"):
        SendingEnd(SECRET, INSTANCE, b"n" * 16).receive(b"SSH-2.0")


def test_a_forged_signal_is_refused() -> None:
    listening, sending, _ = handshake()
    genuine = sending.signal(5)
    forged = (6).to_bytes(8, "big") + genuine[8:]
    with pytest.raises(Refused, match="signal 0 of the connection is forged"):
        listening.receive(forged)


def test_a_replayed_or_reordered_signal_is_refused() -> None:
    listening, sending, _ = handshake()
    first, second = sending.signal(5), sending.signal(6)
    assert listening.receive(first) == [Signal(5)]
    with pytest.raises(Refused, match="signal 1"):
        listening.receive(first)
    listening, sending, _ = handshake()
    first, second = sending.signal(5), sending.signal(6)
    with pytest.raises(Refused, match="signal 0"):
        listening.receive(second)


def test_a_signal_of_another_connection_is_refused() -> None:
    """Each connection's nonces make its own signing key."""
    listening, _, _ = handshake()
    other = SendingEnd(SECRET, INSTANCE, b"m" * 16)
    other.receive(ListeningEnd(SECRET, b"d" * 16).challenge)
    signal = other.signal(5)
    assert len(signal) == SIGNAL_BYTES
    with pytest.raises(Refused, match="signal 0 of the connection is forged"):
        listening.receive(signal)


def test_a_listener_saying_more_than_its_challenge_and_admission_is_refused() -> None:
    listening, sending, _ = handshake()
    sending.receive(ADMITTED)
    with pytest.raises(Refused, match="said more"):
        sending.receive(ADMITTED)
