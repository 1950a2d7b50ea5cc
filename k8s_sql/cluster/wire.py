"""The peer channel's protocol: a handshake proving the sender holds the database's secret,
then signed commit signals, one way.

The listening end speaks first::

    listener → sender  challenge  MAGIC (8 bytes), nonce (16)
    sender → listener  hello      MAGIC, instance (8), nonce (16),
                                  HMAC-SHA256(secret, "hello" + both nonces + instance) (32)
    listener → sender  admitted   one byte, 1, once the listener knows the sender as a live member
    sender → listener  signal     revision (8), HMAC-SHA256(key, sequence (8) + revision)[:16]

Integers are unsigned, big-endian.  ``instance`` names the sending server process's row
of the member registry.  ``key`` is HMAC-SHA256(secret, "signal" + both nonces), so it is
new for every connection, and ``sequence`` numbers the connection's signals from 0: a
signal cannot be forged without the secret, nor replayed, reordered or moved to another
connection.  The sender may signal as soon as it has sent its hello; the listener passes
signals on once it has admitted the sender.  Both ends are state machines fed bytes, doing
no I/O (as h2's connection).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

#: The protocol's name and version, opening the challenge and the hello.
MAGIC = b"k8sqlps1"
NONCE_BYTES = 16
MAC_BYTES = 32
SIGNAL_MAC_BYTES = 16
CHALLENGE_BYTES = len(MAGIC) + NONCE_BYTES
HELLO_BYTES = len(MAGIC) + 8 + NONCE_BYTES + MAC_BYTES
ADMITTED = b"\x01"
SIGNAL_BYTES = 8 + SIGNAL_MAC_BYTES

_U64 = struct.Struct(">Q")


class Refused(Exception):
    """The other end broke the protocol or failed to authenticate; the message says how."""


@dataclass(frozen=True, slots=True)
class Hello:
    """The sender authenticated as server process ``instance``."""

    instance: int


@dataclass(frozen=True, slots=True)
class Answer:
    """The hello to send, answering the listener's challenge."""

    hello: bytes


@dataclass(frozen=True, slots=True)
class Admitted:
    """The listener takes this sender's signals."""


@dataclass(frozen=True, slots=True)
class Signal:
    """The sender committed ``revision``."""

    revision: int


def _hello_mac(secret: bytes, challenge: bytes, nonce: bytes, instance: int) -> bytes:
    return hmac.digest(secret, b"hello" + challenge + nonce + _U64.pack(instance), hashlib.sha256)


def _signal_key(secret: bytes, challenge: bytes, nonce: bytes) -> bytes:
    return hmac.digest(secret, b"signal" + challenge + nonce, hashlib.sha256)


def _signal_mac(key: bytes, sequence: int, revision: bytes) -> bytes:
    return hmac.digest(key, _U64.pack(sequence) + revision, hashlib.sha256)[:SIGNAL_MAC_BYTES]


class ListeningEnd:
    """The receiving end of one connection: checks the hello, then each signal.

    @param secret: the database's peer secret.
    @param nonce: ``NONCE_BYTES`` fresh random bytes for this connection's challenge.
    """

    def __init__(self, secret: bytes, nonce: bytes) -> None:
        self._secret = secret
        self._nonce = nonce
        #: What to send first.
        self.challenge = MAGIC + nonce
        self._buffer = b""
        self._key: bytes | None = None
        self._sequence = 0

    def receive(self, data: bytes) -> list[Hello | Signal]:
        """Take bytes from the sender; the hello and signals they complete.

        @raise Refused: a bad hello (not this protocol, not signed with the secret) or a
            signal not signed for this place in the connection.
        """
        self._buffer += data
        events: list[Hello | Signal] = []
        if self._key is None:
            if len(self._buffer) < HELLO_BYTES:
                if not MAGIC.startswith(self._buffer[: len(MAGIC)]):
                    raise Refused("not the peer protocol")
                return events
            hello, self._buffer = self._buffer[:HELLO_BYTES], self._buffer[HELLO_BYTES:]
            events.append(self._hello(hello))
        while len(self._buffer) >= SIGNAL_BYTES:
            signal, self._buffer = self._buffer[:SIGNAL_BYTES], self._buffer[SIGNAL_BYTES:]
            events.append(self._signal(signal))
        return events

    def _hello(self, hello: bytes) -> Hello:
        if not hello.startswith(MAGIC):
            raise Refused("not the peer protocol")
        (instance,) = _U64.unpack_from(hello, len(MAGIC))
        nonce = hello[len(MAGIC) + 8 : len(MAGIC) + 8 + NONCE_BYTES]
        if not hmac.compare_digest(hello[-MAC_BYTES:], _hello_mac(self._secret, self._nonce, nonce, instance)):
            raise Refused("hello not signed with this database's peer secret")
        self._key = _signal_key(self._secret, self._nonce, nonce)
        return Hello(instance)

    def _signal(self, signal: bytes) -> Signal:
        assert self._key is not None
        revision = signal[:8]
        if not hmac.compare_digest(signal[8:], _signal_mac(self._key, self._sequence, revision)):
            raise Refused(f"signal {self._sequence} of the connection is forged")
        self._sequence += 1
        return Signal(_U64.unpack(revision)[0])


class SendingEnd:
    """The sending end of one connection: answers the challenge, then signs each signal.

    @param secret: the database's peer secret.
    @param instance: the sending process's instance in the member registry.
    @param nonce: ``NONCE_BYTES`` fresh random bytes for this connection.
    """

    def __init__(self, secret: bytes, instance: int, nonce: bytes) -> None:
        self._secret = secret
        self._instance = instance
        self._nonce = nonce
        self._buffer = b""
        self._key: bytes | None = None
        self._sequence = 0
        self._admitted = False

    @property
    def ready(self) -> bool:
        """Whether the hello has been made, so signals may follow."""
        return self._key is not None

    def receive(self, data: bytes) -> list[Answer | Admitted]:
        """Take bytes from the listener: the answer to its challenge once complete, then
        its admission.

        @raise Refused: the listener does not speak the protocol, or says more.
        """
        self._buffer += data
        events: list[Answer | Admitted] = []
        if self._key is None:
            if not MAGIC.startswith(self._buffer[: len(MAGIC)]):
                raise Refused("the listener does not speak the peer protocol")
            if len(self._buffer) < CHALLENGE_BYTES:
                return events
            challenge, self._buffer = self._buffer[len(MAGIC) : CHALLENGE_BYTES], self._buffer[CHALLENGE_BYTES:]
            self._key = _signal_key(self._secret, challenge, self._nonce)
            mac = _hello_mac(self._secret, challenge, self._nonce, self._instance)
            events.append(Answer(MAGIC + _U64.pack(self._instance) + self._nonce + mac))
        if self._buffer:
            if self._buffer != ADMITTED or self._admitted:
                raise Refused("the listener said more than its challenge and admission")
            self._buffer = b""
            self._admitted = True
            events.append(Admitted())
        return events

    def signal(self, revision: int) -> bytes:
        """The signed signal that ``revision`` is committed (once ``ready``)."""
        assert self._key is not None, "no hello yet"
        packed = _U64.pack(revision)
        signal = packed + _signal_mac(self._key, self._sequence, packed)
        self._sequence += 1
        return signal
