"""TLS for the gRPC API, from files named by the environment:

EARPIECE_TLS_CERT, EARPIECE_TLS_KEY   the server's certificate chain and private key (PEM)
EARPIECE_TLS_CLIENT_CA                 optional: require client certificates signed by this CA

With neither cert nor key set the API is plaintext (the embedded default on loopback)."""

from __future__ import annotations

from pathlib import Path

import grpc

from services.runtime.config import ConfigError, Settings


def _read(path: Path, variable: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}); check {variable}") from exc
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{path} is not a PEM file; check {variable}")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The gateway's TLS credentials, or None for plaintext; ConfigError names the variable."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ConfigError(
                "EARPIECE_TLS_CLIENT_CA needs TLS: set EARPIECE_TLS_CERT and EARPIECE_TLS_KEY too"
            )
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        missing = "EARPIECE_TLS_KEY" if settings.tls_key is None else "EARPIECE_TLS_CERT"
        raise ConfigError(f"TLS needs both a certificate and its key: set {missing}")
    cert = _read(settings.tls_cert, "EARPIECE_TLS_CERT")
    key = _read(settings.tls_key, "EARPIECE_TLS_KEY")
    client_ca = (
        None
        if settings.tls_client_ca is None
        else _read(settings.tls_client_ca, "EARPIECE_TLS_CLIENT_CA")
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
