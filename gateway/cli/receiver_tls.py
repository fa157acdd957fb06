"""TLS contexts and secrets for `gateway receiver`: the HTTPS endpoint's and the MQTT client's."""

from __future__ import annotations

import ssl
from pathlib import Path

import click


def endpoint_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The HTTPS endpoint's server context, or None for plain HTTP."""
    if (cert is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        return None
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise click.BadParameter(f"cannot load the certificate and key: {exc}") from exc
    return tls


def broker_tls(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The MQTT client's context (verifying the broker against `ca`), or None for plain MQTT."""
    if (cert is None) != (key is None):
        raise click.UsageError("--mqtt-cert and --mqtt-key go together")
    if ca is None:
        if cert is not None:
            raise click.UsageError("--mqtt-cert needs --mqtt-ca (TLS to the broker)")
        return None
    try:
        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        if cert is not None and key is not None:
            tls.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise click.BadParameter(f"cannot load the MQTT TLS files: {exc}") from exc
    return tls


def read_password(path: Path | None) -> str | None:
    """The password in `path` (first line, without its line ending), or None."""
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc
    return lines[0] if lines else ""
