"""One run: the agent's answer to one message, streamed into the session and stored at its end.

The run belongs to the session, not the connection: a client that disconnects mid-run loses
nothing (ASP-HIS-004), and a resuming client picks the stream up again (ASP-RES-004). This module
maps pydantic-ai's stream events to ASP events and stores the exchange; whether and when a run
starts, and the events that end it (error, complete), are the decision core's
(`reference_server.protocol.connection`).
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic_ai import (
    Agent,
    AgentRunResult,
    AgentStreamEvent,
    CancellationToken,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    PartDeltaEvent,
    PartStartEvent,
    RunCancelled,
)
from pydantic_ai.exceptions import AgentRunError, ModelAPIError, UnexpectedModelBehavior
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from reference_server.agent.offline_model import OfflineModelFailure
from reference_server.history import arguments_of, tool_content, tool_failed
from reference_server.logs import get_logger
from reference_server.protocol import events
from reference_server.protocol.connection import RunOutcome
from reference_server.storage import ConversationStore, Exchange, agent_history
from spec.messages import ErrorCode, FinishReason, Usage

log = get_logger("runs")
MODEL_FAILURES: tuple[type[BaseException], ...] = (
    ModelAPIError,
    UnexpectedModelBehavior,
    AgentRunError,
    OfflineModelFailure,
)


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(8)


class StopReason(enum.Enum):
    CANCEL = "cancel"  # the client's cancel (ASP-CAN-001): finish_reason cancelled
    SHUTDOWN = "shutdown"  # the grace period ended (ASP-CLS-005): error shutting_down, finish error


class RunSink(Protocol):
    """The session as a run sees it."""

    id: str
    user_id: str
    conversation_id: str

    def emit(self, event: events.Event) -> None: ...


@dataclass
class RunHandle:
    """A started run, as the server holds it. Written only by this module (`stop` included)."""

    run_id: str
    message_id: str
    prompt: str
    token: CancellationToken = field(default_factory=CancellationToken)
    stop_reason: StopReason | None = None
    task: asyncio.Task[None] | None = None

    def stop(self, reason: StopReason) -> None:
        """Stop the run; it ends through the usual path (open tool calls answered, stored, complete)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.token.cancel()


@dataclass
class RunContext:
    agent: Agent[None, str | None]
    store: ConversationStore
    reasoning: bool


@dataclass
class ToolSegment:
    call_id: str
    name: str
    arguments: dict[str, Any]
    content: Any = None
    is_error: bool | None = None  # None: no result yet


class Run:
    """Maps pydantic-ai's stream events to ASP events and records what was streamed, in order."""

    def __init__(self, sink: RunSink, handle: RunHandle, context: RunContext) -> None:
        self.sink = sink
        self.handle = handle
        self.context = context
        # text stretches (their deltas, joined when stored: appending to one string would copy it
        # at every delta) and tool calls, as produced
        self.streamed: list[list[str] | ToolSegment] = []
        self._stretch: list[str] | None = None  # the text stretch being streamed (streamed[-1])
        self._emit = sink.emit  # per token: one lookup less
        self.open_calls: dict[str, ToolSegment] = {}
        self.usage: Usage = {}

    def emit_text(self, delta: str) -> None:
        if not delta:
            return
        stretch = self._stretch
        if stretch is None:
            stretch = self._stretch = []
            self.streamed.append(stretch)
        stretch.append(delta)
        self._emit(events.text_delta(self.handle.run_id, delta))

    def emit_reasoning(self, delta: str) -> None:
        if delta and self.context.reasoning:
            self.sink.emit(events.reasoning_delta(self.handle.run_id, delta))

    async def on_events(self, _: Any, stream: AsyncIterable[AgentStreamEvent]) -> None:
        """pydantic-ai's event stream handler: called in the run's own task for each step's events,
        so an event costs no hand-over between tasks (run_stream_events adds a background task and
        a zero-buffer channel: two task switches per event)."""
        on_event = self.on_event
        async for event in stream:
            on_event(event)

    def on_event(self, event: AgentStreamEvent) -> None:
        """Handle one pydantic-ai event."""
        run_id = self.handle.run_id
        if isinstance(event, PartDeltaEvent):  # the most frequent event first: one per token
            if isinstance(event.delta, TextPartDelta):
                self.emit_text(event.delta.content_delta)
            elif isinstance(event.delta, ThinkingPartDelta) and event.delta.content_delta:
                self.emit_reasoning(event.delta.content_delta)
        elif isinstance(event, PartStartEvent):
            if isinstance(event.part, TextPart):
                self.emit_text(event.part.content)
            elif isinstance(event.part, ThinkingPart):
                self.emit_reasoning(event.part.content)
        elif isinstance(event, FunctionToolCallEvent):
            part = event.part
            segment = ToolSegment(part.tool_call_id, part.tool_name, arguments_of(part))
            self.streamed.append(segment)
            self._stretch = None
            self.open_calls[part.tool_call_id] = segment
            self.sink.emit(events.tool_call(run_id, segment.call_id, segment.name, segment.arguments))
        elif isinstance(event, FunctionToolResultEvent):
            result = event.part
            closed = self.open_calls.pop(result.tool_call_id, None)  # type: ToolSegment | None
            if closed is not None:
                closed.content, closed.is_error = tool_content(result), tool_failed(result)
                self.sink.emit(events.tool_result(run_id, closed.call_id, closed.content, closed.is_error))

    def on_result(self, result: AgentRunResult[Any]) -> list[ModelMessage]:
        """The run's final result: keep its usage; returns its new messages."""
        usage = result.usage
        self.usage = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "requests": usage.requests,
        }
        return list(result.new_messages())

    def close_open_calls(self, why: str) -> None:
        """Every tool_call gets its tool_result before complete, whatever happened (ASP-TOOL-002)."""
        for segment in self.open_calls.values():
            segment.content, segment.is_error = why, True
            self.sink.emit(events.tool_result(self.handle.run_id, segment.call_id, why, True))
        self.open_calls.clear()

    def streamed_messages(self) -> list[ModelMessage]:
        """The exchange as far as it went, for a run with no final result (ASP-HIS-008): the prompt,
        the text streamed so far, each tool call with its result (the interrupted ones failed)."""
        stored: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart(content=self.handle.prompt)])]
        response: list[ModelResponsePart] = []
        for item in self.streamed:
            if isinstance(item, list):
                response.append(TextPart(content="".join(item)))
                continue
            response.append(ToolCallPart(tool_name=item.name, args=item.arguments, tool_call_id=item.call_id))
            stored.append(ModelResponse(parts=response))
            response = []
            returned: list[ModelRequestPart] = [
                ToolReturnPart(
                    tool_name=item.name,
                    content=item.content,
                    tool_call_id=item.call_id,
                    outcome="interrupted" if item.is_error else "success",
                )
            ]
            stored.append(ModelRequest(parts=returned))
        if response:
            stored.append(ModelResponse(parts=response))
        return stored


async def execute(sink: RunSink, handle: RunHandle, context: RunContext) -> RunOutcome:
    """Run the agent for one message and store the exchange; returns how the run ended.

    Never raises (a failure is the outcome internal_error); open tool calls get their tool_result
    before it returns. The caller hands the outcome to the core, which sends error and complete.
    """
    run = Run(sink, handle, context)
    finish: FinishReason = "stop"
    error: ErrorCode | None = None
    final: list[ModelMessage] | None = None
    try:
        history = agent_history(await context.store.load(sink.conversation_id, sink.user_id))
        result = await context.agent.run(
            handle.prompt,
            message_history=history,
            cancellation_token=handle.token,
            event_stream_handler=run.on_events,
        )
        final = run.on_result(result)
    except RunCancelled:
        finish = "cancelled"
        if handle.stop_reason is StopReason.SHUTDOWN:
            finish, error = "error", "shutting_down"
    except asyncio.CancelledError:  # the server is going down harder than its grace period
        finish, error = "error", "shutting_down"
        run.close_open_calls("cancelled: the server is shutting down")
        await _store(context, sink, handle, finish, run.streamed_messages())
        raise
    except MODEL_FAILURES as failure:
        finish, error = "error", "model_error"
        log.warning("model failed: %s", type(failure).__name__, extra=_context(sink, handle))
    except Exception:
        finish, error = "error", "internal_error"
        log.exception("run failed", extra=_context(sink, handle))
    run.close_open_calls("cancelled" if finish == "cancelled" else "interrupted")
    await _store(
        context, sink, handle, finish, final if finish == "stop" and final else run.streamed_messages()
    )
    return RunOutcome(finish_reason=finish, error=error, usage=run.usage or None)


async def _store(
    context: RunContext, sink: RunSink, handle: RunHandle, finish: FinishReason, messages: list[ModelMessage]
) -> None:
    exchange = Exchange(handle.run_id, handle.message_id, finish, tuple(messages))
    try:
        await asyncio.shield(context.store.append(sink.conversation_id, sink.user_id, exchange))
    except Exception:
        log.exception("storing the exchange failed", extra=_context(sink, handle))


def _context(sink: RunSink, handle: RunHandle) -> dict[str, Any]:
    return {"asp": {"user": sink.user_id, "session": sink.id, "run": handle.run_id}}
