"""What a connect costs before the broker answers: the ClientHello of the uplink's TLS context."""

from __future__ import annotations

import contextlib
import ssl

from gateway.config import MqttConfig
from gateway.uplink.session import OP_TLSEXT_PADDING, ResumingContext


def client_hello(context: ssl.SSLContext) -> int:
    """Bytes of the first flight of a handshake (memory BIOs: no network needed)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="broker.example")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    return len(outgoing.read())


def test_a_tls_1_3_only_client_hello_is_half_the_size() -> None:
    """Measured with OpenSSL 3.0: 517 bytes (TLS 1.2 suites and extensions, padded to 512) against
    243; on an LTE link every connect, resumed or not, pays it."""
    both, only_13 = client_hello(ResumingContext()), client_hello(ResumingContext(tls13_only=True))
    assert only_13 < 256 < 512 <= both
    assert not ResumingContext(tls13_only=True).options & OP_TLSEXT_PADDING  # nor padded when resumed
    assert MqttConfig().tls_min_version == "1.3"


def legacy_session_id(context: ssl.SSLContext) -> bytes:
    """The ClientHello's legacy_session_id (RFC 8446 4.1.2): after the record header (5 bytes), the
    handshake header (4), legacy_version (2) and random (32), one length byte and the id."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="broker.example")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    return hello[44 : 44 + hello[43]]


def test_a_tls_1_3_only_client_sends_no_middlebox_compatibility_bytes() -> None:
    """No made-up 32-byte session id (which the broker echoes) and no ChangeCipherSpec records:
    70 bytes of every connect after an LTE drop; a client that still offers TLS 1.2 keeps them."""
    assert legacy_session_id(ResumingContext(tls13_only=True)) == b""
    assert len(legacy_session_id(ResumingContext())) == 32
    assert not ResumingContext(tls13_only=True).options & ssl.OP_ENABLE_MIDDLEBOX_COMPAT
