"""The bench's floors serve what the server serves: the framework floor is the server's own agent
behind the bare stack, measured by the same client code as the server."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from loadtests.bench import measure
from loadtests.bench.processes import Served, start
from spec.fixtures import text_tokens


@pytest.fixture(scope="module")
def bare() -> Served:
    served = start("loadtests.bench.bare_server")
    yield served
    served.stop()


async def _answer(url: str, prompt: str) -> list[dict]:
    websocket = await measure.open_ws(url)
    try:
        await websocket.send(orjson.dumps({"type": "message", "content": prompt}).decode())
        received = []
        while not received or received[-1]["type"] != "complete":
            received.append(orjson.loads(await websocket.recv()))
        return received
    finally:
        await websocket.close()


def test_the_framework_floor_streams_the_server_agents_answer_one_event_per_delta(bare: Served) -> None:
    received = asyncio.run(_answer(bare.url, "asp-fixture:text 7"))
    deltas, complete = received[:-1], received[-1]
    assert [event["type"] for event in deltas] == ["text_delta"] * 7
    assert "".join(event["delta"] for event in deltas) == "".join(text_tokens(7))
    assert [event["seq"] for event in received] == list(range(1, 9))
    assert complete["finish_reason"] == "stop" and {e["run_id"] for e in received} == {complete["run_id"]}


def test_the_framework_floor_is_measured_by_the_servers_client_code(bare: Served) -> None:
    outcome = asyncio.run(measure.server_stream(bare.url, [""] * 4, 200, expect_session=False))
    assert outcome["tokens"] == 200
    assert outcome["tokens_per_s"] > 0 and outcome["ttft_p50_ms"] > 0


def test_a_server_that_stops_answering_fails_the_measurement_instead_of_hanging_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(measure, "SILENCE_LIMIT_S", 0.3)

    async def silent(websocket: ServerConnection) -> None:
        await websocket.wait_closed()

    async def scenario() -> list[str]:
        async with serve(silent, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            websocket = await measure.open_ws(f"ws://127.0.0.1:{port}/")
            complaints = []
            for wait in (measure._until_session(websocket), measure._stream(websocket, "asp-fixture:text 1")):
                with pytest.raises(measure.ServerSilent) as silence:
                    await wait
                complaints.append(str(silence.value))
            await websocket.close()
            return complaints

    assert asyncio.run(scenario()) == [
        "no `session` event within 0.3 s of connecting",
        "no `complete` within 0.3 s of sending a message",
    ]
