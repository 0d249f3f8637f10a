"""A client process for test_scale_out: attaches to a session, says so, then waits (the test
freezes it with SIGSTOP)."""

from __future__ import annotations

import asyncio
import sys

from services.client import EarpieceClient


async def main(address: str, session_id: str) -> None:
    async with EarpieceClient.connect(address) as client, client.attach(session_id):
        print("attached", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
