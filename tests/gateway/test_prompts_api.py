"""StartSession with a persona spec or raw instructions: lint errors reject the request with the
findings as structured details; warnings come back in the response and are recorded."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status

from services.api.earpiece.v1 import session_pb2 as pb
from services.client import EarpieceClient
from services.demo import PERSONA
from services.gateway.server import RunningGateway
from tests.gateway.test_session_api import BRIEFING

FEW_SHOT = BRIEFING + "\n\nUser: What is a fraction?\nAssistant: A part of a whole.\n"


@pytest.fixture
async def client(gateway: RunningGateway):
    async with EarpieceClient.connect(gateway.address) as c:
        yield c


async def test_few_shot_prompt_is_rejected_with_findings(client: EarpieceClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.start_session(tenant_id="acme", instructions=FEW_SHOT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.instructions" in (info.value.details() or "")
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None
    findings = []
    for detail in status.details:
        if detail.Is(pb.PromptFinding.DESCRIPTOR):
            finding = pb.PromptFinding()
            detail.Unpack(finding)
            findings.append(finding)
    errors = [f for f in findings if f.severity == pb.PromptFinding.SEVERITY_ERROR]
    assert errors and errors[0].rule.startswith("few-shot")
    assert errors[0].line > 1 and errors[0].rewrite


async def test_warnings_come_back_and_are_recorded(client: EarpieceClient) -> None:
    hedged = BRIEFING + " You typically give numbered steps."
    started = await client.start_session(tenant_id="acme", instructions=hedged)
    assert [w.rule for w in started.warnings] == ["hedge"]
    events = [e async for e in client.read_events(started.session.session_id)]
    recorded = next(e for e in events if e.kind == "prompt.lint_warnings")
    assert '"hedge"' in recorded.payload_json
    await client.end_session(started.session.session_id)


async def test_persona_spec_compiles_and_its_hash_is_kept(client: EarpieceClient) -> None:
    started = await client.start_session(
        tenant_id="acme",
        persona_yaml=PERSONA.read_text(),
        tools=["highlight_element", "mark_step_complete"],
    )
    assert not started.warnings
    assert len(started.session.prompt_hash) == 64
    again = await client.get_session(started.session.session_id)
    assert again.prompt_hash == started.session.prompt_hash
    await client.end_session(started.session.session_id)


async def test_invalid_persona_spec_names_the_field(client: EarpieceClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.start_session(tenant_id="acme", persona_yaml="identity: 3\n")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.persona_yaml" in (info.value.details() or "")
