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
    temporal_address: str | None
    temporal_namespace: str
    grpc_address: str
    openai_api_key: str | None
    realtime_model: str
    simulator_url: str | None

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
        )
