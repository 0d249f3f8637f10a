"""Keys of two tenants in each role, and clients that carry exactly the key they are given."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from services.auth import Role
from services.client import EarpieceClient
from services.gateway.server import RunningGateway
from tests.conftest import MakeKey

BRIEFING = (
    "You are a friendly voice tutor speaking with one student at a time about the lesson on "
    "their screen. Speak in short sentences, one idea at a time, warmly and plainly. When the "
    "student asks for steps, give them numbered, one at a time, and wait for the student to say "
    "they are done before the next. When the student makes a mistake, name what went wrong in "
    "one sentence and show the fix."
)


@dataclass(frozen=True)
class Tenant:
    name: str
    client: str
    analyst: str


@dataclass(frozen=True)
class Keys:
    a: Tenant
    b: Tenant
    admin: str  # an admin key of a third tenant


@pytest.fixture(scope="session")
async def keys(api_key: MakeKey) -> Keys:
    async def tenant(prefix: str) -> Tenant:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        return Tenant(name, await api_key(name, Role.CLIENT), await api_key(name, Role.ANALYST))

    return Keys(
        a=await tenant("alpha"),
        b=await tenant("beta"),
        admin=await api_key(f"ops-{uuid.uuid4().hex[:8]}", Role.ADMIN),
    )


ClientAs = Callable[[str | None], AbstractAsyncContextManager[EarpieceClient]]


@pytest.fixture
def client_as(gateway: RunningGateway) -> ClientAs:
    """`async with client_as(key) as c`: a client sending exactly `key` (None: no key at all,
    whatever EARPIECE_API_KEY says)."""

    @asynccontextmanager
    async def make(key: str | None) -> AsyncIterator[EarpieceClient]:
        async with EarpieceClient.connect(gateway.address, api_key=key or "") as client:
            yield client

    return make


async def start(client: EarpieceClient, **kw: object) -> str:
    started = await client.start_session(instructions=BRIEFING, **kw)  # type: ignore[arg-type]
    return started.session.session_id
