"""One run: the agent's answer to one message, streamed into the session and stored at its end.

The run belongs to the session, not the connection: a client that disconnects mid-run loses
nothing (ASP-HIS-004), and a resuming client picks the stream up again (ASP-RES-004).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic_ai import (
    Agent,
    AgentRunResultEvent,
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
    ModelResponse,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    UserPromptPart,
)

from reference_server.agent.offline_model import OfflineModelFailure
from reference_server.history import tool_failed
from reference_server.logs import get_logger
from reference_server.protocol import events
from reference_server.sessions import RunState, Session
from reference_server.storage import ConversationStore
from spec.messages import FinishReason, Usage

log = get_logger("runs")
MODEL_FAILURES: tuple[type[BaseException], ...] = (
    ModelAPIError,
    UnexpectedModelBehavior,
    AgentRunError,
    OfflineModelFailure,
)


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


@dataclass
class RunContext:
    agent: Agent[None, str]
    store: ConversationStore
    reasoning: bool


class Run:
    """Maps pydantic-ai's stream events to ASP events and keeps what the run produced."""

    def __init__(self, session: Session, state: RunState, prompt: str, context: RunContext) -> None:
        self.session = session
        self.state = state
        self.prompt = prompt
        self.context = context
        self.open_calls: dict[str, str] = {}
        self.text: list[str] = []
        self.usage: Usage = {}

    def emit(self, event: events.Event) -> None:
        self.session.emit(event)

    def emit_text(self, delta: str) -> None:
        if delta:
            self.text.append(delta)
            self.emit(events.text_delta(self.state.run_id, delta))

    def emit_reasoning(self, delta: str) -> None:
        if delta and self.context.reasoning:
            self.emit(events.reasoning_delta(self.state.run_id, delta))

    def on_event(self, event: Any) -> list[ModelMessage] | None:
        """Handle one pydantic-ai event; returns the run's messages when it is the final result."""
        run_id = self.state.run_id
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
            self.open_calls[part.tool_call_id] = part.tool_name
            self.emit(events.tool_call(run_id, part.tool_call_id, part.tool_name, _arguments(part)))
        elif isinstance(event, FunctionToolResultEvent):
            result = event.part
            if result.tool_call_id in self.open_calls:
                del self.open_calls[result.tool_call_id]
                content = result.content if not tool_failed(result) else str(result.content)
                self.session.emit(
                    events.tool_result(run_id, result.tool_call_id, _jsonable(content), tool_failed(result))
                )
        elif isinstance(event, AgentRunResultEvent):
            usage = event.result.usage
            self.usage = {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "requests": usage.requests,
            }
            return list(event.result.all_messages())
        return None

    def close_open_calls(self, why: str) -> None:
        """Every tool_call gets its tool_result before complete, whatever happened (ASP-TOOL-002)."""
        for call_id in list(self.open_calls):
            self.session.emit(events.tool_result(self.state.run_id, call_id, why, True))
        self.open_calls.clear()

    def partial_messages(self, history: list[ModelMessage]) -> list[ModelMessage]:
        """What to store when the run produced no final messages: the prompt and the text so far."""
        stored = [*history, ModelRequest(parts=[UserPromptPart(content=self.prompt)])]
        if self.text:
            stored.append(ModelResponse(parts=[TextPart(content="".join(self.text))]))
        return stored


def _arguments(part: ToolCallPart) -> dict[str, Any]:
    try:
        return part.args_as_dict()
    except ValueError:
        return {"raw": str(part.args)}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


async def execute(session: Session, state: RunState, prompt: str, context: RunContext) -> None:
    """Run the agent for one message; always ends with complete and the exchange stored."""
    run = Run(session, state, prompt, context)
    token = CancellationToken()
    state.cancel = token.cancel
    if state.cancel_requested:
        token.cancel()
    history: list[ModelMessage] = []
    finish: FinishReason = "stop"
    messages: list[ModelMessage] | None = None
    try:
        history = await context.store.load(session.conversation_id, session.user_id)
        async with context.agent.run_stream_events(
            prompt, message_history=history, cancellation_token=token
        ) as stream:
            async for event in stream:
                final = run.on_event(event)
                if final is not None:
                    messages = final
    except RunCancelled as cancelled:
        finish = "cancelled"
        messages = list(cancelled.all_messages()) or None
    except asyncio.CancelledError:  # the server is shutting down: end the run the same way, then stop
        await _finish(run, context, "cancelled", None, history, "cancelled: the server is shutting down")
        raise
    except MODEL_FAILURES as failure:
        finish = "error"
        log.warning("model failed: %s", type(failure).__name__, extra=_context(session, state))
        session.emit(events.error("model_error", "The model failed to answer.", run_id=state.run_id))
    except Exception:
        finish = "error"
        log.exception("run failed", extra=_context(session, state))
        session.emit(
            events.error("internal_error", "The server failed while answering.", run_id=state.run_id)
        )
    await _finish(
        run, context, finish, messages, history, "cancelled" if finish == "cancelled" else "interrupted"
    )


async def _finish(
    run: Run,
    context: RunContext,
    finish: FinishReason,
    messages: list[ModelMessage] | None,
    history: list[ModelMessage],
    why_open_calls_ended: str,
) -> None:
    """Every run ends here: open tool calls answered, the exchange stored, then complete."""
    run.close_open_calls(why_open_calls_ended)
    await _store(context, run.session, messages or run.partial_messages(history))
    run.session.emit(events.complete(run.state.run_id, finish, run.usage or None))


async def _store(context: RunContext, session: Session, messages: list[ModelMessage]) -> None:
    try:
        await asyncio.shield(context.store.save(session.conversation_id, session.user_id, messages))
    except Exception:
        log.exception("storing the exchange failed", extra={"asp": {"session": session.id}})


def _context(session: Session, state: RunState) -> dict[str, Any]:
    return {"asp": {"user": session.user_id, "session": session.id, "run": state.run_id}}
