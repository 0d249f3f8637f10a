"""SessionWorkflow: one per session (workflow id = session id), the session's durable owner.

It sees only coarse events from the gateway, so its history grows by a handful of events per
turn; it ends on EndSession or when no client has been attached for the idle timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.messages import (
    CLOSE_SESSION_STREAM,
    DELIVER_TOOL_OUTPUTS,
    SESSION_TASK_QUEUE,
    CloseStreamInput,
    DeliverOutputsInput,
    EndRequest,
    GatewayEvent,
    GatewayEventKind,
    RecordEndInput,
    RunToolInput,
    SessionInput,
    SessionOutcome,
    SessionProgress,
    SessionView,
    ToolCall,
    ToolOutput,
)
from workflows.search_attributes import STATUS

with workflow.unsafe.imports_passed_through():
    from workflows.activities.session_store import SessionStoreActivities
    from workflows.tools.registry import TOOLS

RUN_TOOL = "run_tool"


@workflow.defn
class SessionWorkflow:
    def __init__(self) -> None:
        self._input: SessionInput | None = None
        self._progress = SessionProgress()
        self._end: EndRequest | None = None
        self._ended = False
        self._playback_done: set[str] = set()
        self._gates: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, input: SessionInput) -> SessionOutcome:
        self._input = input
        if input.carried is not None:
            self._progress = input.carried
        idle = timedelta(seconds=input.idle_timeout_seconds)

        while self._end is None:
            if workflow.info().is_continue_as_new_suggested():
                # Held tool calls live in this run: let them finish before the history is cut.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and all(g.done() for g in self._gates)
                )
                workflow.continue_as_new(
                    SessionInput(
                        session_id=input.session_id,
                        tenant_id=input.tenant_id,
                        idle_timeout_seconds=input.idle_timeout_seconds,
                        tools=input.tools,
                        carried=self._progress,
                    )
                )
            seen = self._progress.events_seen
            attached = self._progress.gateway_queue is not None
            try:
                # Attached sessions wait for anything; detached ones for a re-attach within idle.
                await workflow.wait_condition(
                    self._ending_or_news(seen), timeout=None if attached else idle
                )
            except TimeoutError:
                self._end = EndRequest(reason="idle_timeout")

        outcome = await self._finish(self._end)
        # Let the `end` update that asked for this return its answer before the run completes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    def _ending_or_news(self, seen: int) -> Callable[[], bool]:
        return lambda: self._end is not None or self._progress.events_seen != seen

    async def _finish(self, end: EndRequest) -> SessionOutcome:
        assert self._input is not None
        for gate in self._gates:
            gate.cancel()
        recorded_by_gateway = False
        queue, connection = self._progress.gateway_queue, self._progress.connection_id
        if queue is not None and connection is not None:
            # The gateway that holds the stream records the end and closes it. If that process
            # is gone the activity times out and the end is recorded here instead.
            try:
                await workflow.execute_activity(
                    CLOSE_SESSION_STREAM,
                    CloseStreamInput(
                        session_id=self._input.session_id,
                        connection_id=connection,
                        reason=end.reason,
                    ),
                    task_queue=queue,
                    schedule_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=2),
                )
                recorded_by_gateway = True
            except ActivityError:
                workflow.logger.warning("gateway %s did not close the stream", queue)
        await workflow.execute_activity_method(
            SessionStoreActivities.record_session_end,
            RecordEndInput(
                session_id=self._input.session_id,
                reason=end.reason,
                append_event=not recorded_by_gateway,
            ),
            start_to_close_timeout=timedelta(seconds=30),
        )
        workflow.upsert_search_attributes([STATUS.value_set("ended")])
        self._ended = True
        return SessionOutcome(
            session_id=self._input.session_id,
            reason=end.reason,
            turns=self._progress.turns,
            responses=self._progress.responses,
        )

    @workflow.signal
    def gateway_event(self, event: GatewayEvent) -> None:
        p = self._progress
        p.events_seen += 1
        p.last_seq = max(p.last_seq, event.seq)
        match event.kind:
            case GatewayEventKind.ATTACHED:
                p.gateway_queue = event.gateway_queue or None
                p.connection_id = event.connection_id or None
            case GatewayEventKind.DETACHED:
                # A stale detach (an older connection closing after a newer attached) is ignored.
                if event.connection_id == p.connection_id:
                    p.gateway_queue = None
                    p.connection_id = None
            case GatewayEventKind.TURN_COMMITTED:
                p.turns += 1
            case GatewayEventKind.RESPONSE_DONE:
                p.responses += 1
            case GatewayEventKind.SCREEN_STATE_CHANGED:
                p.screen_changes += 1
            case GatewayEventKind.LINK_LOST:
                p.link_losses += 1
            case GatewayEventKind.PLAYBACK_DONE:
                self._playback_done.add(event.detail.get("response_id", ""))
            case GatewayEventKind.FUNCTION_CALL_REQUESTED:
                self._gates.append(asyncio.create_task(self._tool_gate(event)))
            case _:
                pass

    # ---- the tool gate: tools run only after the assistant's speech is done ----

    async def _tool_gate(self, event: GatewayEvent) -> None:
        assert self._input is not None
        response_id = event.detail.get("response_id", "")
        interrupted = event.detail.get("status") == "cancelled"
        run = [c for c in event.calls if not interrupted or self._survives(c)]
        dropped = [c for c in event.calls if c not in run]
        if run:
            # Held until the response's audio is generated (the signal comes at response.done)
            # and played; a tool never cuts the assistant off mid-sentence.
            await workflow.wait_condition(
                lambda: response_id in self._playback_done or self._end is not None
            )
        if self._end is not None:
            return
        outputs = list(await asyncio.gather(*(self._run_tool(c) for c in run)))
        await workflow.wait_condition(
            lambda: self._progress.gateway_queue is not None or self._end is not None
        )
        queue, connection = self._progress.gateway_queue, self._progress.connection_id
        if queue is None or connection is None:
            return
        await workflow.execute_activity(
            DELIVER_TOOL_OUTPUTS,
            DeliverOutputsInput(
                session_id=self._input.session_id,
                connection_id=connection,
                response_id=response_id,
                outputs=outputs,
                dropped=dropped,
            ),
            task_queue=queue,
            schedule_to_close_timeout=timedelta(seconds=15),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )

    def _survives(self, call: ToolCall) -> bool:
        spec = TOOLS.get(call.name)
        return spec is not None and spec.survives_interruption

    async def _run_tool(self, call: ToolCall) -> ToolOutput:
        assert self._input is not None
        started = workflow.now().isoformat()
        spec = TOOLS.get(call.name)
        if spec is None or call.name not in self._input.tools:
            return ToolOutput(
                call_id=call.call_id,
                name=call.name,
                outcome="failed",
                output=json.dumps({"error": f"tool {call.name!r} is not available"}),
                started_at=started,
            )
        try:
            output: str = await workflow.execute_activity(
                RUN_TOOL,
                RunToolInput(
                    session_id=self._input.session_id,
                    call=call,
                    idempotency_key=f"{self._input.session_id}:{call.call_id}",
                ),
                task_queue=SESSION_TASK_QUEUE,
                start_to_close_timeout=spec.start_to_close,
                retry_policy=RetryPolicy(
                    maximum_attempts=spec.maximum_attempts,
                    non_retryable_error_types=["InvalidToolArguments"],
                ),
                result_type=str,
            )
        except ActivityError as exc:
            cause = exc.cause
            message = str(cause.message if cause is not None and hasattr(cause, "message") else exc)
            return ToolOutput(
                call_id=call.call_id,
                name=call.name,
                outcome="failed",
                output=json.dumps({"error": message}),
                started_at=started,
            )
        return ToolOutput(
            call_id=call.call_id,
            name=call.name,
            outcome="succeeded",
            output=output,
            started_at=started,
        )

    @workflow.update
    async def end(self, request: EndRequest) -> SessionOutcome:
        """Ends the session and returns once the end is recorded everywhere."""
        if self._end is None:
            self._end = request
        await workflow.wait_condition(lambda: self._ended)
        assert self._input is not None
        return SessionOutcome(
            session_id=self._input.session_id,
            reason=self._end.reason,
            turns=self._progress.turns,
            responses=self._progress.responses,
        )

    @workflow.query
    def state(self) -> SessionView:
        assert self._input is not None
        return SessionView(
            session_id=self._input.session_id,
            tenant_id=self._input.tenant_id,
            status="ended" if self._ended else ("ending" if self._end else "active"),
            attached=self._progress.gateway_queue is not None,
            gateway_queue=self._progress.gateway_queue,
            progress=self._progress,
            end_reason=self._end.reason if self._end else None,
        )
