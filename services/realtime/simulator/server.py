"""The simulator's WebSocket server, at the path the official SDK connects to.

`AsyncOpenAI(api_key="sim", websocket_base_url=server.url)` followed by
`client.realtime.connect(model=...)` reaches `/v1/realtime?model=...` here. Each connection is
one `SimulatorSession`; the scenario's script is shared by all of them, so a conversation that
reconnects continues where it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from http import HTTPStatus
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from services.realtime.simulator.scenario import ResponseSpec, Scenario, UserUtterance
from services.realtime.simulator.session import SimulatorBug, SimulatorSession

__all__ = ["RateLimits", "ScriptCursor", "SimulatorServer", "serve_simulator"]

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # one append may carry up to 15 MiB of audio


_RATE_WINDOW_S = 60.0


class RateLimits:
    """Per-minute request and token limits shared by every connection (they belong to the
    account, not the socket), as `rate_limits.updated` reports them: usage in the last minute
    lowers `remaining`, and `reset_seconds` is how long until the oldest of it ages out."""

    def __init__(self, *, requests: int, tokens: int) -> None:
        self.limits = {"requests": requests, "tokens": tokens}
        self._usage: deque[tuple[float, str, int]] = deque()

    def record(self, name: str, amount: int, *, now: float | None = None) -> None:
        if amount > 0:
            self._usage.append((time.monotonic() if now is None else now, name, amount))

    def snapshot(self, *, now: float | None = None) -> list[dict[str, object]]:
        moment = time.monotonic() if now is None else now
        while self._usage and moment - self._usage[0][0] >= _RATE_WINDOW_S:
            self._usage.popleft()
        report: list[dict[str, object]] = []
        for name, limit in self.limits.items():
            used = [(at, amount) for at, kind, amount in self._usage if kind == name]
            reset = _RATE_WINDOW_S - (moment - used[0][0]) if used else 0.0
            report.append(
                {
                    "name": name,
                    "limit": limit,
                    "remaining": max(0, limit - sum(amount for _, amount in used)),
                    "reset_seconds": round(max(0.0, reset), 3),
                }
            )
        return report


class ScriptCursor:
    """Where the conversation is in the scenario, across connections."""

    def __init__(self, scenario: Scenario) -> None:
        self._scenario = scenario
        configured = scenario.session.rate_limits
        self.rate_limits = RateLimits(
            requests=configured.get("requests", 5000), tokens=configured.get("tokens", 40000)
        )
        self.responses_started = 0
        self.responses_done = 0
        self.utterances_used = 0
        self.dropped = False

    def take_response(self) -> tuple[int, ResponseSpec]:
        index = self.responses_started
        self.responses_started += 1
        return index, self._scenario.response_at(index)

    def take_utterance(self) -> tuple[int, UserUtterance] | None:
        """The next scripted user line and its index, or None once they run out."""
        if self.utterances_used >= len(self._scenario.utterances):
            return None
        index = self.utterances_used
        self.utterances_used += 1
        return index, self._scenario.utterances[index]

    def peek_utterance(self) -> UserUtterance | None:
        """The line the user is scripted to say next, without taking it."""
        if self.utterances_used >= len(self._scenario.utterances):
            return None
        return self._scenario.utterances[self.utterances_used]

    def count_done_and_check_drop(self) -> bool:
        """Count a finished response; True when the scenario wants the socket dropped now."""
        self.responses_done += 1
        limit = self._scenario.session.drop_after_responses
        if limit is not None and not self.dropped and self.responses_done >= limit:
            self.dropped = True
            return True
        return False


class SimulatorServer:
    """A running simulator. Use `serve_simulator()` or `async with SimulatorServer(...)`."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        scenario: Scenario,
        realtime_pacing: bool,
        api_key: str | None = None,
        validate_first: int | None = None,
    ) -> None:
        self.host = host
        # None: every event checked against the SDK's types. A count: only that many of each
        # event type per connection and direction (load runs, where checking every audio frame
        # would cost as much CPU as the gateway under test).
        self.validate_first = validate_first
        self.scenario = scenario
        self.realtime_pacing = realtime_pacing
        self.script = ScriptCursor(scenario)
        self.sessions: list[SimulatorSession] = []
        self.failures: list[BaseException] = []
        self._requested_port = port
        self._api_key = api_key
        self._server: Server | None = None
        self._session_added = asyncio.Condition()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the simulator has no listening socket")

    @property
    def url(self) -> str:
        """The SDK's `websocket_base_url` for this simulator."""
        return f"ws://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        self._server = await serve(
            self._serve_connection,
            self.host,
            self._requested_port,
            process_request=self._check_handshake,
            max_size=_MAX_MESSAGE_BYTES,
            compression=None,
        )
        log.info("Realtime simulator listening on %s (scenario %s)", self.url, self.scenario.name)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    def raise_if_failed(self) -> None:
        """Raise the first simulator bug seen (an invalid event it built, a crash)."""
        if self.failures:
            raise SimulatorBug(f"{len(self.failures)} simulator failure(s)") from self.failures[0]

    async def wait_for_session(
        self, index: int = 0, *, timeout_s: float = 10.0
    ) -> SimulatorSession:
        """The `index`-th connection (0-based), waiting for it to arrive."""
        async with self._session_added:
            await asyncio.wait_for(
                self._session_added.wait_for(lambda: len(self.sessions) > index), timeout=timeout_s
            )
        return self.sessions[index]

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        target = urlsplit(request.path)
        if target.path.rstrip("/") != REALTIME_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"No route for {target.path}\n")
        if not parse_qs(target.query).get("model"):
            return connection.respond(HTTPStatus.BAD_REQUEST, "Missing required query: model\n")
        if self._api_key is not None and (
            request.headers.get("Authorization") != f"Bearer {self._api_key}"
        ):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Incorrect API key provided\n")
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        request = connection.request
        model = "gpt-realtime"
        if request is not None:
            model = parse_qs(urlsplit(request.path).query).get("model", [model])[0]
        session = SimulatorSession(
            connection=connection,
            scenario=self.scenario,
            script=self.script,
            realtime_pacing=self.realtime_pacing,
            model=model,
            index=len(self.sessions),
            on_bug=self._record_failure,
            validate_first=self.validate_first,
        )
        async with self._session_added:
            self.sessions.append(session)
            self._session_added.notify_all()
        await session.run()

    def _record_failure(self, failure: BaseException) -> None:
        log.error("simulator failure: %s", failure, exc_info=failure)
        self.failures.append(failure)


async def serve_simulator(
    *,
    host: str,
    port: int,
    scenario: Scenario,
    realtime_pacing: bool,
    api_key: str | None = None,
    validate_first: int | None = None,
) -> SimulatorServer:
    """Start a simulator and return it running; `port=0` picks a free port (see `.url`);
    `validate_first`: see `SimulatorServer`."""
    server = SimulatorServer(
        host=host,
        port=port,
        scenario=scenario,
        realtime_pacing=realtime_pacing,
        api_key=api_key,
        validate_first=validate_first,
    )
    await server.start()
    return server
