"""The WebSocket protocol as clients see it, through a real daphne process."""
import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.asyncio

RECEIVE_TIMEOUT = 10


def auth(key):
    return {"Authorization": f"Bearer {key}"}


async def create_session(server, key, **body):
    status, reply, _ = await asyncio.to_thread(server.request, "POST", "/sessions", key, body)
    assert status == 201
    return reply["conversation_id"]


async def receive_frame(socket):
    return json.loads(await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT))


async def receive_until(socket, predicate):
    """Return the events received until one satisfies `predicate`, that one included."""
    events = []
    for _ in range(50):
        frame = await receive_frame(socket)
        events.extend(frame["events"])
        if any(predicate(event) for event in frame["events"]):
            return events
    raise AssertionError(f"No matching event in {events}")


async def close_code(url, **kwargs):
    async with websockets.connect(url, **kwargs) as socket:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT)
        return socket.close_code


async def test_missing_key_closes_4001(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])

    code = await close_code(f"{daphne.ws_url}/ws/{conversation_id}")

    assert code == 4001


async def test_unknown_key_closes_4001(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])

    code = await close_code(
        f"{daphne.ws_url}/ws/{conversation_id}", additional_headers=auth("nope.nope")
    )

    assert code == 4001


async def test_unknown_session_closes_4004(daphne, alice):
    code = await close_code(f"{daphne.ws_url}/ws/{'0' * 32}", additional_headers=auth(alice[1]))

    assert code == 4004


async def test_malformed_id_closes_4004(daphne, alice):
    code = await close_code(f"{daphne.ws_url}/ws/not-an-id", additional_headers=auth(alice[1]))

    assert code == 4004


async def test_other_owner_closes_4004(daphne, alice, bob):
    conversation_id = await create_session(daphne, alice[1])

    code = await close_code(
        f"{daphne.ws_url}/ws/{conversation_id}", additional_headers=auth(bob[1])
    )

    assert code == 4004


async def test_foreign_origin_closes_4003(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])

    code = await close_code(
        f"{daphne.ws_url}/ws/{conversation_id}",
        additional_headers=auth(alice[1]),
        origin="http://elsewhere.example",
    )

    assert code == 4003


async def test_invalid_after_closes_4000(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])
    url = f"{daphne.ws_url}/ws/{conversation_id}?after=abc"

    async with websockets.connect(url, additional_headers=auth(alice[1])) as socket:
        frame = await receive_frame(socket)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT)

    assert frame["error"] is True
    assert "after" in frame["message"]
    assert socket.close_code == 4000


async def test_original_example_flow(daphne, alice):
    conversation_id = await create_session(daphne, alice[1], initial_message="Hello")
    url = f"{daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(url, additional_headers={"Authorization": alice[1]}) as socket:
        replay = await receive_frame(socket)
        await socket.send("Your message")
        live = await receive_until(socket, lambda event: event["type"] == "user_message")

    assert [event["id"] for event in replay["events"]] == [1, 2]
    assert replay["events"][1]["content"] == "Hello"
    assert live[-1]["content"] == "Your message"
    assert live[-1]["source"] == "user"
    assert live[-1]["id"] == 3
    assert live[-1]["timestamp"].endswith("Z")


async def test_browser_subprotocol_auth(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])
    url = f"{daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(
        url, subprotocols=["openhands-api", f"token.{alice[1]}"]
    ) as socket:
        frame = await receive_frame(socket)

    assert socket.subprotocol == "openhands-api"
    assert frame["events"][0]["type"] == "status"


async def test_replay_after_skips_older(daphne, alice):
    conversation_id = await create_session(daphne, alice[1], initial_message="one")
    await asyncio.to_thread(
        daphne.request, "POST", f"/sessions/{conversation_id}/messages", alice[1], {"content": "two"}
    )
    url = f"{daphne.ws_url}/ws/{conversation_id}?after=2"

    async with websockets.connect(url, additional_headers=auth(alice[1])) as socket:
        frame = await receive_frame(socket)

    assert [event["id"] for event in frame["events"]] == [3]
    assert frame["events"][0]["content"] == "two"


async def test_two_clients_get_events(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])
    url = f"{daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(url, additional_headers=auth(alice[1])) as first, \
            websockets.connect(url, additional_headers=auth(alice[1])) as second:
        await receive_frame(first)
        await receive_frame(second)
        await first.send(json.dumps({"type": "message", "content": "shared"}))
        seen_first = await receive_until(first, lambda event: event["type"] == "user_message")
        seen_second = await receive_until(second, lambda event: event["type"] == "user_message")

    assert seen_first[-1]["content"] == "shared"
    assert seen_second[-1]["content"] == "shared"
    assert seen_first[-1]["id"] == seen_second[-1]["id"]


async def test_other_session_gets_nothing(daphne, alice):
    watched = await create_session(daphne, alice[1])
    other = await create_session(daphne, alice[1])

    async with websockets.connect(
        f"{daphne.ws_url}/ws/{watched}", additional_headers=auth(alice[1])
    ) as socket:
        await receive_frame(socket)
        await asyncio.to_thread(
            daphne.request, "POST", f"/sessions/{other}/messages", alice[1], {"content": "elsewhere"}
        )
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(socket.recv(), 1)


async def test_delete_closes_with_1000(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])
    url = f"{daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(url, additional_headers=auth(alice[1])) as socket:
        await receive_frame(socket)
        status, _, _ = await asyncio.to_thread(
            daphne.request, "DELETE", f"/sessions/{conversation_id}", alice[1]
        )
        final = await receive_frame(socket)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT)

    assert status == 200
    assert final["events"][-1]["type"] == "status"
    assert final["events"][-1]["status"] == "ended"
    assert final["has_more"] is False
    assert socket.close_code == 1000


async def test_ended_session_closes_4004(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])
    await asyncio.to_thread(daphne.request, "DELETE", f"/sessions/{conversation_id}", alice[1])

    code = await close_code(
        f"{daphne.ws_url}/ws/{conversation_id}", additional_headers=auth(alice[1])
    )

    assert code == 4004


@pytest.mark.parametrize(
    "frame, expected",
    [
        ('"   "', "blank"),
        (json.dumps({"type": "dance"}), "known types are message, interrupt"),
        (json.dumps({"type": "message", "content": 5}), "must be a string"),
        (b"\x00\x01", "Binary frames are not supported"),
    ],
)
async def test_bad_input_keeps_socket_open(daphne, alice, frame, expected):
    conversation_id = await create_session(daphne, alice[1])
    url = f"{daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(url, additional_headers=auth(alice[1])) as socket:
        await receive_frame(socket)
        await socket.send(frame)
        error = await receive_frame(socket)
        await socket.send("still here")
        live = await receive_until(socket, lambda event: event["type"] == "user_message")

    assert error["error"] is True
    assert expected in error["message"]
    assert live[-1]["content"] == "still here"


async def test_oversized_frame_names_limit(daphne, alice, settings):
    conversation_id = await create_session(daphne, alice[1])
    url = f"{daphne.ws_url}/ws/{conversation_id}"
    limit = settings.WEBSOCKET_MAX_FRAME_BYTES

    async with websockets.connect(url, additional_headers=auth(alice[1])) as socket:
        await receive_frame(socket)
        await socket.send("x" * (limit + 1))
        error = await receive_frame(socket)

    assert error["error"] is True
    assert str(limit) in error["message"]


async def test_reconnect_gets_missed_events(daphne, alice):
    conversation_id = await create_session(daphne, alice[1])
    url = f"{daphne.ws_url}/ws/{conversation_id}"
    async with websockets.connect(url, additional_headers=auth(alice[1])) as socket:
        first = await receive_frame(socket)
    last_seen = first["events"][-1]["id"]

    await asyncio.to_thread(
        daphne.request, "POST", f"/sessions/{conversation_id}/messages", alice[1], {"content": "missed"}
    )
    async with websockets.connect(
        f"{url}?after={last_seen}", additional_headers=auth(alice[1])
    ) as socket:
        frame = await receive_frame(socket)

    assert [event["id"] for event in frame["events"]] == [last_seen + 1]
    assert frame["events"][0]["content"] == "missed"


async def test_http_upgrade_not_refused(daphne, alice):
    # A close before the accept would reach the client as HTTP 403 instead of a close code.
    try:
        await close_code(f"{daphne.ws_url}/ws/{'f' * 32}")
    except InvalidStatus as error:
        pytest.fail(f"Handshake refused with HTTP {error.response.status_code}")


async def test_unknown_path_closes_4004(daphne, alice):
    code = await close_code(f"{daphne.ws_url}/elsewhere", additional_headers=auth(alice[1]))

    assert code == 4004
