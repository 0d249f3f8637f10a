"""Settings, read once from the environment. Unset means "use the embedded default"."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(RuntimeError):
    """A setting is wrong or a server it names cannot be reached. The message is one line that
    names the variable to check; the CLI prints it instead of a traceback."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    state_dir: Path
    database_url: str | None
    # The schema's owner, for migrations and `earpiece keys` (default: DATABASE_URL). The app
    # itself should log in (DATABASE_URL) as the application role, which is not the owner.
    database_owner_url: str | None = None
    temporal_address: str | None
    temporal_namespace: str
    grpc_address: str
    openai_api_key: str | None
    realtime_model: str
    simulator_url: str | None
    # TLS for the gRPC API: the server's certificate chain and key (PEM files), and the CA that
    # client certificates must chain to (set: mTLS, a client without a valid cert is refused).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ) if env is None else env
        return cls(
            state_dir=Path(e.get("EARPIECE_STATE_DIR") or PROJECT_ROOT / ".earpiece").resolve(),
            database_url=e.get("DATABASE_URL") or None,
            temporal_address=e.get("TEMPORAL_ADDRESS") or None,
            temporal_namespace=e.get("TEMPORAL_NAMESPACE") or "default",
            grpc_address=e.get("EARPIECE_GRPC_ADDRESS") or "127.0.0.1:50051",
            openai_api_key=e.get("OPENAI_API_KEY") or None,
            realtime_model=e.get("OPENAI_REALTIME_MODEL") or "gpt-realtime",
            simulator_url=e.get("EARPIECE_SIMULATOR_URL") or None,
            database_owner_url=e.get("DATABASE_OWNER_URL") or None,
            tls_cert=_path(e.get("EARPIECE_TLS_CERT")),
            tls_key=_path(e.get("EARPIECE_TLS_KEY")),
            tls_client_ca=_path(e.get("EARPIECE_TLS_CLIENT_CA")),
        )

    @property
    def dev_key_file(self) -> Path:
        """Where the embedded default keeps its development API key (mode 0600)."""
        return self.state_dir / "dev-key"


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
