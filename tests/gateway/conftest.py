"""Fixtures for the gateway tests on the live path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from services.gateway.server import RunningGateway, running_gateway
from services.runtime.app import model_link_factory
from services.runtime.config import Settings
from tests.gateway.live_helpers import GatewayFor


@pytest.fixture
def gateway_for(gateway: RunningGateway, settings: Settings) -> GatewayFor:
    """Makes a gateway whose sessions talk to the model at a given URL (the session-wide
    `gateway` fixture runs the workflow worker they share)."""

    @asynccontextmanager
    async def make(url: str) -> AsyncIterator[RunningGateway]:
        async with running_gateway(
            store=gateway.gateway.store,
            client=gateway.gateway.client,
            address="127.0.0.1:0",
            link_factory=model_link_factory(settings, simulator_url=url),
        ) as running:
            yield running

    return make
