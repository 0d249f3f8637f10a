"""The hostile tests' own stack (see stack.py), for tests that restart Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.hostile.stack import Stack, hostile_stack


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with hostile_stack() as running:
        yield running
