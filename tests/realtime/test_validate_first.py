"""`validate_first` (the load benchmark's light simulator): only the first events of each type
are checked against the SDK's types; by default every one is."""

from __future__ import annotations

import base64
from typing import Any

from tests.realtime.conftest import SdkConnect, StartSimulator

SCENARIO: dict[str, Any] = {
    "name": "validate-first",
    "session": {"pacing": "fast"},
    "user_utterances": ["Hello?"],
    "responses": [{"say": "Hello."}],
}
# An append with a key the GA protocol does not have: refused whenever it is checked.
BAD_APPEND = {
    "type": "input_audio_buffer.append",
    "audio": base64.b64encode(bytes(960)).decode(),
    "extra": 1,
}


async def test_every_event_is_checked_by_default(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    sdk = await sdk_connect(await start_simulator(SCENARIO))
    for _ in range(2):
        await sdk.send(BAD_APPEND)
        assert (await sdk.until("error"))[-1]["error"]["code"] == "unknown_parameter"


async def test_only_the_first_of_each_type_are_checked(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(SCENARIO, validate_first=1)
    sdk = await sdk_connect(server)
    await sdk.send(BAD_APPEND)
    assert (await sdk.until("error"))[-1]["error"]["code"] == "unknown_parameter"
    await sdk.send(BAD_APPEND)  # the second append is not checked: its audio is taken
    updated = await sdk.configure()  # and a session.update (its first) is answered
    assert updated["type"] == "session.updated"
    assert [e["type"] for e in server.sessions[0].sent_events("error")] == ["error"]
    assert len(server.sessions[0].input_audio) == 960
