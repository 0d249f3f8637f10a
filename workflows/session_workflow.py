"""SessionWorkflow: one per session (workflow id = session id), the session's durable owner.

It sees only coarse events from the gateway, so its history grows by a handful of events per
turn; it ends on EndSession or when no client has been attached for the idle timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import CancelledError as TemporalCancelledError

from workflows.messages import (
    CLOSE_SESSION_STREAM,
    HOLD_SESSION,
    ROTATE_MODEL_LINK,
    SESSION_TASK_QUEUE,
    CloseStreamInput,
    EndRequest,
    GatewayEvent,
    GatewayEventKind,
    HoldInput,
    RecordEndInput,
    RotateInput,
    RunToolInput,
    SessionInput,
    SessionOutcome,
    SessionProgress,
    SessionView,
    SettleRequest,
    ToolCall,
    ToolOutput,
    dropped_output,
)
from workflows.search_attributes import STATUS

with workflow.unsafe.imports_passed_through():
    from workflows.activities.session_store import SessionStoreActivities
    from workflows.tools.registry import TOOLS

RUN_TOOL = "run_tool"
# Call ids remembered against a second decision: far more than a session has open at once.
MAX_CALLS_REMEMBERED = 500


@workflow.defn
class SessionWorkflow:
    @workflow.init
    def __init__(self, input: SessionInput) -> None:
        # The input is known before any handler runs: an update can arrive in the very first
        # workflow task, before `run` has started.
        self._input: SessionInput | None = input
        self._progress = input.carried if input.carried is not None else SessionProgress()
        self._end: EndRequest | None = None
        self._ended = False
        # Tool activities in flight, by call id.
        self._running: dict[str, asyncio.Task[None]] = {}
        self._settling = 0
        # The current holder's lease and link-rotation timer.
        self._watchers: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, input: SessionInput) -> SessionOutcome:
        idle = timedelta(seconds=input.idle_timeout_seconds)
        p = self._progress
        if p.gateway_queue is not None and p.connection_id is not None:
            self._watch(p.gateway_queue, p.connection_id)  # carried over by continue-as-new

        while self._end is None:
            if workflow.info().is_continue_as_new_suggested():
                # Running tools live in this run: let them finish before the history is cut;
                # their outcomes travel in the carried progress.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and not self._running
                )
                workflow.continue_as_new(dataclasses.replace(input, carried=self._progress))
            attached = self._progress.gateway_queue is not None
            try:
                # Attached sessions wait for anything; detached ones for a re-attach within idle.
                await workflow.wait_condition(
                    self._news(self._progress.events_seen), timeout=None if attached else idle
                )
            except TimeoutError:
                self._end = EndRequest(reason="idle_timeout")

        outcome = await self._finish(self._end)
        # Let the `end` update that asked for this return its answer before the run completes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    def _news(self, seen: int) -> Callable[[], bool]:
        return lambda: self._end is not None or self._progress.events_seen != seen

    async def _finish(self, end: EndRequest) -> SessionOutcome:
        """Every call still open gets its outcome recorded before the end: a running tool is
        cancelled (its outcome: the session ended), and the `settle` answers waiting on it go
        out before the stream closes. Calls the log holds that no holder settled (a crashed
        gateway's) are closed by whoever records the end."""
        assert self._input is not None
        p = self._progress
        self._unwatch()
        for task in list(self._running.values()):
            task.cancel()
        # The settle answers waiting on those go out before the stream closes (not every
        # handler: the `end` update that asked for this is one, and waits for it).
        await workflow.wait_condition(lambda: not self._running and self._settling == 0)
        recorded_by_gateway = False
        queue, connection = p.gateway_queue, p.connection_id
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
                    # A live gateway picks it up in milliseconds; a dead one never will.
                    schedule_to_start_timeout=timedelta(seconds=3),
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=2),
                )
                recorded_by_gateway = True
            except ActivityError:
                workflow.logger.warning("gateway %s did not close the stream", queue)
        try:
            await workflow.execute_activity_method(
                SessionStoreActivities.record_session_end,
                RecordEndInput(
                    session_id=self._input.session_id,
                    reason=end.reason,
                    append_event=not recorded_by_gateway,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    maximum_attempts=10, maximum_interval=timedelta(seconds=10)
                ),
            )
        except ActivityError as exc:
            # The session ends all the same; the failure is in the workflow's log and history.
            workflow.logger.error("recording the end of %s failed: %s", self._input.session_id, exc)
        workflow.upsert_search_attributes([STATUS.value_set("ended")])
        self._ended = True
        return SessionOutcome(
            session_id=self._input.session_id,
            reason=end.reason,
            turns=p.turns,
            responses=p.responses,
        )

    @workflow.signal
    def gateway_event(self, event: GatewayEvent) -> None:
        p = self._progress
        p.events_seen += 1
        p.last_seq = max(p.last_seq, event.seq)
        p.turns += int(event.detail.get("turns", "0") or 0)
        p.responses += int(event.detail.get("responses", "0") or 0)
        match event.kind:
            case GatewayEventKind.ATTACHED:
                p.gateway_queue = event.gateway_queue or None
                p.connection_id = event.connection_id or None
                p.detached_cause = None
                if p.gateway_queue is not None and p.connection_id is not None:
                    self._watch(p.gateway_queue, p.connection_id)
            case GatewayEventKind.DETACHED:
                # A stale detach (an older connection closing after a newer attached) is ignored.
                if event.connection_id == p.connection_id:
                    self._detach("client_detached")
            case GatewayEventKind.TURN_COMMITTED:
                p.turns += 1
            case GatewayEventKind.RESPONSE_DONE:
                p.responses += 1
            case _:
                pass

    # ---- the holder: a lease it renews, and the link-rotation timer ----

    def _watch(self, queue: str, connection: str) -> None:
        self._unwatch()
        self._watchers = [
            asyncio.create_task(self._hold(queue, connection)),
            asyncio.create_task(self._rotate(queue, connection)),
        ]

    def _unwatch(self) -> None:
        for task in self._watchers:
            task.cancel()
        self._watchers = []

    def _detach(self, cause: str) -> None:
        p = self._progress
        p.gateway_queue = p.connection_id = None
        p.detached_cause = cause
        p.events_seen += 1  # wakes the main loop: the idle timeout starts now
        self._unwatch()

    async def _hold(self, queue: str, connection: str) -> None:
        """The holder's lease: an activity on its own queue that heartbeats while it holds the
        stream. A SIGKILLed or frozen holder stops heartbeating, and within `lease_seconds`
        the session is detached (cause `gateway_lost`) and its idle timeout runs."""
        await workflow.wait_condition(lambda: self._input is not None)
        assert self._input is not None
        lease = timedelta(seconds=self._input.lease_seconds)
        try:
            await workflow.execute_activity(
                HOLD_SESSION,
                HoldInput(
                    session_id=self._input.session_id,
                    connection_id=connection,
                    heartbeat_every_seconds=self._input.lease_seconds / 4,
                ),
                task_queue=queue,
                schedule_to_start_timeout=lease,
                start_to_close_timeout=timedelta(days=30),
                heartbeat_timeout=lease,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
            cause = "client_detached"
        except ActivityError as exc:
            if isinstance(exc.cause, TemporalCancelledError):
                return  # this workflow let go of the lease (a newer holder, or the end)
            cause = "gateway_lost"
        if self._progress.connection_id == connection:
            self._detach(cause)

    async def _rotate(self, queue: str, connection: str) -> None:
        """Proactive rotation: a new model link (its conversation rebuilt from the log) before
        the model's cap, never while a tool is held here; the gateway waits for a turn boundary
        (nobody speaking, no response active, no call held)."""
        await workflow.wait_condition(lambda: self._input is not None)
        assert self._input is not None
        while True:
            await workflow.sleep(timedelta(seconds=self._input.rotate_after_seconds))
            await workflow.wait_condition(lambda: not self._running)
            if self._progress.connection_id != connection:
                return
            try:
                await workflow.execute_activity(
                    ROTATE_MODEL_LINK,
                    RotateInput(session_id=self._input.session_id, connection_id=connection),
                    task_queue=queue,
                    schedule_to_start_timeout=timedelta(seconds=10),
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
            except ActivityError:
                workflow.logger.warning("rotation on %s failed; the next one is due later", queue)

    # ---- the tool gate: the gateway's machine says when speech is done; this says run or drop

    @workflow.update
    async def settle(self, request: SettleRequest) -> list[ToolOutput]:
        """A response's speech is done (or was cut off): each call runs, or is dropped if the
        user interrupted it and its tool does not survive interruption. Answers with each call's
        one outcome once it has one; a call settled again gets the same outcome."""
        p = self._progress
        p.turns += request.turns
        p.responses += request.responses
        self._settling += 1
        try:
            for call in request.calls:
                self._decide(call, interrupted=request.interrupted)
            await workflow.wait_condition(
                lambda: all(c.call_id in p.outcomes for c in request.calls)
            )
            return [p.outcomes[c.call_id] for c in request.calls]
        finally:
            self._settling -= 1

    def _decide(self, call: ToolCall, *, interrupted: bool) -> None:
        p = self._progress
        if call.call_id in p.outcomes or call.call_id in self._running:
            return
        if self._end is not None:
            self._record(dropped_output(call, reason="session_ended"))
        elif interrupted and not self._survives(call):
            self._record(dropped_output(call, reason="interrupted"))
        else:
            self._running[call.call_id] = asyncio.create_task(self._run_call(call))

    def _record(self, output: ToolOutput) -> None:
        outcomes = self._progress.outcomes
        outcomes[output.call_id] = output
        while len(outcomes) > MAX_CALLS_REMEMBERED:
            del outcomes[next(iter(outcomes))]

    async def _run_call(self, call: ToolCall) -> None:
        try:
            output = await self._run_tool(call)
        except asyncio.CancelledError:
            output = dropped_output(call, reason="session_ended")
        self._record(output)
        self._running.pop(call.call_id, None)

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
        request = RunToolInput(
            session_id=self._input.session_id,
            call=call,
            idempotency_key=f"{self._input.session_id}:{call.call_id}",
        )
        retry = RetryPolicy(
            maximum_attempts=spec.maximum_attempts,
            non_retryable_error_types=["InvalidToolArguments"],
        )
        try:
            output: str
            if spec.runs_locally:
                output = await workflow.execute_local_activity(
                    RUN_TOOL,
                    request,
                    start_to_close_timeout=spec.start_to_close,
                    retry_policy=retry,
                    result_type=str,
                )
            else:
                output = await workflow.execute_activity(
                    RUN_TOOL,
                    request,
                    task_queue=SESSION_TASK_QUEUE,
                    start_to_close_timeout=spec.start_to_close,
                    retry_policy=retry,
                    result_type=str,
                )
        except (ActivityError, ApplicationError) as exc:
            # A local activity's failure arrives as the ApplicationError itself; an ordinary
            # activity's wraps it.
            cause = exc.cause if isinstance(exc, ActivityError) else exc
            message = str(cause.message if cause is not None and hasattr(cause, "message") else exc)
            return ToolOutput(
                call_id=call.call_id,
                name=call.name,
                outcome="failed",
                output=json.dumps({"error": message}),
                started_at=started,
                finished_at=workflow.now().isoformat(),
            )
        return ToolOutput(
            call_id=call.call_id,
            name=call.name,
            outcome="succeeded",
            output=output,
            started_at=started,
            finished_at=workflow.now().isoformat(),
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
