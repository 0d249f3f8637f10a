"""Composition: the real parts a process needs, from the settings, started in order and stopped
in reverse. Every command of the CLI is built from this."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from temporalio.client import Client

from services.gateway.gateway import LinkFactory
from services.gateway.server import RunningGateway, running_gateway
from services.realtime.link import ModelLink
from services.runtime.config import Settings
from services.runtime.postgres import check_reachable, database_url
from services.runtime.telemetry import temporal_interceptors
from services.runtime.temporal import temporal_client
from services.store.event_store import EventStore
from services.store.migrations import apply_migrations


@dataclass(frozen=True, kw_only=True)
class Infrastructure:
    settings: Settings
    database_url: str
    store: EventStore
    client: Client


@asynccontextmanager
async def infrastructure(
    settings: Settings, *, temporal_port: int | None = 7233
) -> AsyncIterator[Infrastructure]:
    async with database_url(settings) as url:
        await check_reachable(url)
        await apply_migrations(url)
        store = await EventStore.open(url)
        try:
            async with temporal_client(
                settings, port=temporal_port, interceptors=temporal_interceptors()
            ) as client:
                yield Infrastructure(
                    settings=settings, database_url=url, store=store, client=client
                )
        finally:
            await store.close()


def model_link_factory(settings: Settings, *, simulator_url: str | None) -> LinkFactory:
    """OpenAI when OPENAI_API_KEY is set, else the simulator at `simulator_url`."""

    def make(model: str | None, on_send: Callable[[str], None]) -> ModelLink:
        return ModelLink(
            model=model or settings.realtime_model,
            api_key=settings.openai_api_key,
            simulator_url=None if settings.openai_api_key else simulator_url,
            on_send=on_send,
        )

    return make


@asynccontextmanager
async def model_endpoint(
    settings: Settings, *, scenario: str = "tutoring"
) -> AsyncIterator[str | None]:
    """The simulator URL to use: EARPIECE_SIMULATOR_URL, or a built-in simulator started here
    when no OPENAI_API_KEY is set (None when the real API is used)."""
    if settings.openai_api_key:
        yield None
        return
    if settings.simulator_url:
        yield settings.simulator_url
        return
    from services.realtime.simulator.scenario import load_builtin_scenario
    from services.realtime.simulator.server import serve_simulator

    server = await serve_simulator(
        host="127.0.0.1", port=0, scenario=load_builtin_scenario(scenario), realtime_pacing=True
    )
    try:
        yield server.url
    finally:
        await server.stop()


@asynccontextmanager
async def serving_gateway(
    infra: Infrastructure,
    *,
    address: str,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> AsyncIterator[tuple[RunningGateway, str | None]]:
    """The gateway on `address`, its sessions linked to OpenAI or the simulator; yields it and
    the simulator URL (None when the real API is used)."""
    async with (
        model_endpoint(infra.settings) as simulator_url,
        running_gateway(
            store=infra.store,
            client=infra.client,
            address=address,
            interceptors=interceptors,
            link_factory=model_link_factory(infra.settings, simulator_url=simulator_url),
        ) as gateway,
    ):
        yield gateway, simulator_url
