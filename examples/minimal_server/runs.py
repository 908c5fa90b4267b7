"""A run: the agent's answer to one message, streamed as events and stored as one exchange.

`Run.start` emits `run_started` and plays the scripted model's steps in a task. Every way a run
ends goes through `Run._finish`, which answers open tool calls (ASP-TOOL-002), sends the run's
error if it failed (ASP-RUN-008, ASP-ERR-013), stores the exchange as far as it went
(ASP-HIS-001, ASP-HIS-008, ASP-CAN-003) and only then emits `complete` (ASP-RUN-004).

The stored exchange is built as the run produces it: the user entry, then each stretch of text
between tool calls as one assistant entry, each tool call as one tool entry with its result;
every entry carries the run's `run_id` (ASP-HIS-009).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Literal

from examples.minimal_server import events, sizing
from examples.minimal_server.model import CallTool, Fail, Say, Step
from examples.minimal_server.sessions import Session
from examples.minimal_server.store import Store
from examples.minimal_server.tools import TOOLS, ToolFailed

log = logging.getLogger("asp.minimal.runs")

Entry = dict[str, Any]
StopReason = Literal["cancel", "shutdown"]


class ModelFailed(Exception):
    """The scripted model's `Fail` step."""


class Run:
    def __init__(
        self,
        session: Session,
        content: str,
        message_id: str,
        store: Store,
        max_event_bytes: int,
        vendor: bool,
    ) -> None:
        """A run answering `content` in `session`; `vendor`: send an `x-` event after its complete."""
        self.id = "run_" + secrets.token_hex(8)
        self.session = session
        self.conversation_id = session.conversation_id
        self.message_id = message_id
        self.store = store
        self.limit = max_event_bytes
        self.vendor = vendor
        self.exchange: list[Entry] = [
            {"role": "user", "content": content, "message_id": message_id, "run_id": self.id}
        ]
        self.stretch: list[str] = []  # text since the last tool call: one assistant entry when it ends
        self.open_calls: dict[str, Entry] = {}
        self.tokens = 0
        self.stop_reason: StopReason | None = None
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self, steps: list[Step]) -> None:
        """Announce the run (ASP-MSG-001) and play `steps` in a task of its own."""
        self.session.run = self
        self.session.runs_started += 1
        self.session.emit(events.run_started(self.id, self.message_id, self.conversation_id))
        self.task = asyncio.create_task(self._play(steps), name=self.id)

    def stop(self, reason: StopReason) -> None:
        """End the run early: a client's cancel (ASP-CAN-001) or the end of the shutdown grace."""
        if self.task is not None and not self.task.done() and self.stop_reason is None:
            self.stop_reason = reason
            self.task.cancel()

    async def _play(self, steps: list[Step]) -> None:
        try:
            for step in steps:
                if isinstance(step, Say):
                    await self._say(step)
                elif isinstance(step, CallTool):
                    await self._call(step)
                elif isinstance(step, Fail):
                    raise ModelFailed
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise  # not ours: the event loop is going away
            if self.stop_reason == "cancel":
                self._finish("cancelled")
            else:
                self._finish("error", "shutting_down", "the server is shutting down")
        except ModelFailed:
            self._finish("error", "model_error", "the model failed")
        except Exception:
            log.exception("run %s failed", self.id)
            self._finish("error", "internal_error", "the server failed; see its logs")
        else:
            self._finish("stop")

    async def _say(self, step: Say) -> None:
        for number, token in enumerate(step.tokens):
            if number and step.pace_ms:
                await asyncio.sleep(step.pace_ms / 1000)
            elif step.pace_ms is None or number:
                await asyncio.sleep(0)  # let other connections run between tokens
            self._text(token)

    def _text(self, text: str) -> None:
        budget = sizing.text_budget(events.text_delta(self.id, ""), self.limit)
        for piece in sizing.split_text(text, budget):
            self.session.emit(events.text_delta(self.id, piece))
        self.tokens += 1
        self.stretch.append(text)

    def _end_stretch(self) -> None:
        """Contiguous text of a run is one assistant entry; a run without text has none (ASP-HIS-008)."""
        if self.stretch:
            self.exchange.append({"role": "assistant", "content": "".join(self.stretch), "run_id": self.id})
            self.stretch = []

    async def _call(self, step: CallTool) -> None:
        self._end_stretch()
        call_id = "call_" + secrets.token_hex(6)
        entry: Entry = {
            "role": "tool",
            "tool_call_id": call_id,
            "name": step.name,
            "arguments": step.arguments,
            "content": None,
            "is_error": False,
            "run_id": self.id,
        }
        self.exchange.append(entry)
        self.open_calls[call_id] = entry
        call = events.tool_call(self.id, call_id, step.name, step.arguments)
        self.session.emit(sizing.fit_tool_call(call, self.limit))
        try:
            content, is_error = await TOOLS[step.name](**step.arguments), False
        except ToolFailed as failure:
            content, is_error = str(failure), True
        self._answer(call_id, content, is_error)

    def _answer(self, call_id: str, content: Any, is_error: bool) -> None:
        entry = self.open_calls.pop(call_id)
        entry.update(content=content, is_error=is_error)
        result = events.tool_result(self.id, call_id, content, is_error)
        self.session.emit(sizing.fit_tool_result(result, self.limit))

    def _finish(self, finish_reason: str, code: str | None = None, message: str = "") -> None:
        """The one way a run ends. Synchronous: nothing can interleave between store and complete."""
        for call_id in list(self.open_calls):
            self._answer(call_id, "the run ended before the tool returned", True)
        if code is not None:
            self.session.emit(events.error(code, message, run_id=self.id, message_id=self.message_id))
        self._end_stretch()
        try:
            self.store.append(self.conversation_id, self.exchange)
        except Exception:
            log.exception("storing run %s failed", self.id)
            if code is None:
                self.session.emit(
                    events.error(
                        "internal_error",
                        "the answer could not be stored",
                        run_id=self.id,
                        message_id=self.message_id,
                    )
                )
                finish_reason = "error"
        self.session.emit(events.complete(self.id, finish_reason))
        if self.vendor:
            self.session.emit(events.vendor_usage(self.id, self.tokens))
        self.session.run = None
        self.session.last_run_end = time.monotonic()
        self.done.set()
