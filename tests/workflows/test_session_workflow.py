"""SessionWorkflow on the Temporal dev server, and its determinism against golden histories.

Set EARPIECE_WRITE_HISTORIES=1 to refresh the fixtures in histories/ after a deliberate change
(and guard the change with workflow.patched() if old histories must still replay).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from services.store.event_store import EventStore
from workflows.messages import (
    SESSION_TASK_QUEUE,
    EndRequest,
    GatewayEvent,
    GatewayEventKind,
    SessionInput,
    SessionOutcome,
    SessionView,
    SettleRequest,
    ToolCall,
)
from workflows.search_attributes import STATUS, TENANT
from workflows.session_workflow import SessionWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def run_representative_session(
    temporal: Client, store: EventStore, *, tenant: str
) -> tuple[str, SessionView, SessionOutcome]:
    session_id = f"wf-{uuid.uuid4().hex[:10]}"
    await store.create_session(session_id=session_id, tenant_id=tenant, config={}, prompt_hash=None)
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    handle = await temporal.start_workflow(
        SessionWorkflow.run,
        SessionInput(session_id=session_id, tenant_id=tenant, idle_timeout_seconds=600),
        id=session_id,
        task_queue=SESSION_TASK_QUEUE,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(TENANT, tenant), SearchAttributePair(STATUS, "active")]
        ),
    )
    for seq, kind in enumerate(
        [
            GatewayEventKind.TURN_COMMITTED,
            GatewayEventKind.SCREEN_STATE_CHANGED,
            GatewayEventKind.RESPONSE_DONE,
            GatewayEventKind.TURN_COMMITTED,
            GatewayEventKind.RESPONSE_DONE,
        ],
        start=1,
    ):
        await handle.signal(SessionWorkflow.gateway_event, GatewayEvent(kind=kind, seq=seq))
    view = await handle.query(SessionWorkflow.state)
    outcome = await handle.execute_update(SessionWorkflow.end, EndRequest(reason="done"))
    return session_id, view, outcome


async def test_session_workflow_counts_turns_and_ends(gateway, temporal: Client, store) -> None:
    tenant = f"wf-{uuid.uuid4().hex[:6]}"
    session_id, _view, outcome = await run_representative_session(temporal, store, tenant=tenant)
    assert outcome.reason == "done"
    assert outcome.turns == 2 and outcome.responses == 2
    record = await store.get_session(session_id)
    assert record is not None and record.status == "ended" and record.end_reason == "done"
    # The session is findable by tenant and status in Temporal's visibility store.
    async with asyncio.timeout(15):
        while True:
            found = [
                w.id
                async for w in temporal.list_workflows(
                    f"EarpieceTenant = '{tenant}' AND EarpieceStatus = 'ended'"
                )
            ]
            if found:
                break
            await asyncio.sleep(0.3)
    assert found == [session_id]

    history = await temporal.get_workflow_handle(session_id).fetch_history()
    await Replayer(workflows=[SessionWorkflow]).replay_workflow(history)
    if os.environ.get("EARPIECE_WRITE_HISTORIES"):
        (HISTORIES / "session_basic.json").write_text(history.to_json())


async def test_golden_histories_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no golden histories; run with EARPIECE_WRITE_HISTORIES=1 once"
    replayer = Replayer(workflows=[SessionWorkflow])
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer.replay_workflow(history)


async def test_settle_runs_or_drops_each_call_once(gateway, temporal: Client, store) -> None:
    """The tool gate's one message: run a call, drop an interrupted one whose tool does not
    survive, answer a call settled again with the outcome it already has; then the end."""
    session_id = f"wf-{uuid.uuid4().hex[:10]}"
    await store.create_session(session_id=session_id, tenant_id="acme", config={}, prompt_hash=None)
    handle = await temporal.start_workflow(
        SessionWorkflow.run,
        SessionInput(
            session_id=session_id,
            tenant_id="acme",
            idle_timeout_seconds=600,
            tools=["get_hint", "highlight_element"],
        ),
        id=session_id,
        task_queue=SESSION_TASK_QUEUE,
    )

    def call(call_id: str, name: str) -> ToolCall:
        arguments = {
            "get_hint": '{"topic": "fractions"}',
            "highlight_element": '{"element_id": "x"}',
        }
        return ToolCall(
            call_id=call_id, name=name, arguments=arguments[name], response_id="r1", seq=1
        )

    ran = await handle.execute_update(
        SessionWorkflow.settle,
        SettleRequest(
            connection_id="c1",
            response_id="r1",
            interrupted=False,
            decided_by="reported",
            calls=[call("c-hint", "get_hint")],
            turns=1,
            responses=1,
        ),
    )
    dropped = await handle.execute_update(
        SessionWorkflow.settle,
        SettleRequest(
            connection_id="c1",
            response_id="r2",
            interrupted=True,
            decided_by="interrupted",
            calls=[call("c-hl", "highlight_element"), call("c-hint", "get_hint")],
        ),
    )
    outcome = await handle.execute_update(SessionWorkflow.end, EndRequest(reason="done"))
    assert [o.outcome for o in ran] == ["succeeded"]
    assert [o.outcome for o in dropped] == ["dropped", "succeeded"]  # c-hint: the same outcome
    assert dropped[0].reason == "interrupted" and dropped[1] == ran[0]
    assert outcome.turns == 1
    history = await handle.fetch_history()
    await Replayer(workflows=[SessionWorkflow]).replay_workflow(history)
    if os.environ.get("EARPIECE_WRITE_HISTORIES"):
        (HISTORIES / "session_tools.json").write_text(history.to_json())
