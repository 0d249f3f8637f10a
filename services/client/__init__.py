"""The Python client library for product backends: `from services.client import EarpieceClient`."""

from services.client.session_client import (
    EarpieceClient,
    SessionStream,
    TlsConfig,
    authorized_channel,
    default_api_key,
    read_wav_frames,
)

__all__ = [
    "EarpieceClient",
    "SessionStream",
    "TlsConfig",
    "authorized_channel",
    "default_api_key",
    "read_wav_frames",
]
