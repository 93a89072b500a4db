"""The consumer and token middleware, in process, with events entering through the seam."""
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from openhands_api.asgi import application
from sessions import services
from sessions.events import record_event
from sessions.models import Conversation, Event, Status
from sessions.tokens import open_mode_owner

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@sync_to_async
def new_session(user, status=Status.IDLE):
    conversation = services.create_session(user)
    Conversation.objects.filter(pk=conversation.pk).update(status=status)
    return conversation


@sync_to_async
def agent_says(conversation, text, upstream_id=None):
    return record_event(
        conversation.id, type="message", source="agent", content=text, upstream_id=upstream_id
    )


def record_burst(conversation, count):
    # One transaction: the notifications all go out at commit, so they are ready together.
    with transaction.atomic():
        for number in range(count):
            record_event(conversation.id, type="message", source="agent", content=f"part {number}")


async def connect(conversation, key, path_suffix=""):
    communicator = WebsocketCommunicator(
        application,
        f"/ws/{conversation.id.hex}{path_suffix}",
        headers=[(b"authorization", f"Bearer {key}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive(communicator):
    return json.loads(await communicator.receive_from(timeout=5))


async def test_seam_event_reaches_socket(alice):
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    await agent_says(conversation, "Hello from the agent")
    frame = await receive(communicator)
    await communicator.disconnect()

    assert frame["events"][0]["type"] == "message"
    assert frame["events"][0]["content"] == "Hello from the agent"
    assert frame["events"][0]["source"] == "agent"
    assert frame["events"][0]["id"] == 2


async def test_burst_shares_one_frame(alice):
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    await sync_to_async(record_burst)(conversation, 5)
    frame = await receive(communicator)
    await communicator.disconnect()

    assert [event["content"] for event in frame["events"]] == [f"part {n}" for n in range(5)]


async def test_has_more_while_running(alice):
    conversation = await new_session(alice[0], status=Status.RUNNING)
    communicator = await connect(conversation, alice[1])
    replay = await receive(communicator)

    await agent_says(conversation, "working")
    running_frame = await receive(communicator)
    await sync_to_async(services.set_status)(conversation.id, Status.IDLE)
    idle_frame = await receive(communicator)
    await communicator.disconnect()

    assert replay["has_more"] is True
    assert running_frame["has_more"] is True
    assert idle_frame["events"][-1]["status"] == "idle"
    assert idle_frame["has_more"] is False


async def test_duplicate_upstream_event_stored_once(alice):
    conversation = await new_session(alice[0])

    first = await agent_says(conversation, "once", upstream_id="upstream-1")
    second = await agent_says(conversation, "once", upstream_id="upstream-1")
    count = await sync_to_async(Event.objects.filter(conversation=conversation).count)()

    assert first is not None
    assert second is None
    assert count == 2


async def test_gap_filled_from_database(alice):
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    # Store event 2 without notifying, as if its notification were lost, then store event 3.
    await sync_to_async(Event.objects.create)(
        conversation=conversation, seq=2, type="message", source="agent", content="lost"
    )
    await sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(last_event_seq=2)
    await agent_says(conversation, "after the gap")
    frame = await receive(communicator)
    await communicator.disconnect()

    assert [event["id"] for event in frame["events"]] == [2, 3]
    assert frame["events"][0]["content"] == "lost"


async def test_replay_then_live_without_duplicates(alice):
    conversation = await new_session(alice[0])
    await agent_says(conversation, "stored before connecting")
    communicator = await connect(conversation, alice[1], "?after=1")
    replay = await receive(communicator)

    await agent_says(conversation, "live")
    live = await receive(communicator)
    await communicator.disconnect()

    assert [event["id"] for event in replay["events"]] == [2]
    assert [event["id"] for event in live["events"]] == [3]


async def test_replay_pages_are_bounded(alice):
    conversation = await new_session(alice[0])
    for number in range(150):
        await agent_says(conversation, f"event {number}")
    communicator = await connect(conversation, alice[1])

    first = await receive(communicator)
    second = await receive(communicator)
    await communicator.disconnect()

    assert len(first["events"]) == 100
    assert first["has_more"] is True
    assert len(second["events"]) == 51
    assert second["has_more"] is False


async def test_message_stored_as_user_event(alice):
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    await communicator.send_to(text_data="plain text message")
    frame = await receive(communicator)
    await communicator.disconnect()
    stored = await sync_to_async(Event.objects.get)(conversation=conversation, seq=2)

    assert frame["events"][0]["type"] == "user_message"
    assert stored.type == "user_message"
    assert stored.content == "plain text message"
    assert stored.source == "user"


async def test_json_object_not_command_text(alice):
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    await communicator.send_to(text_data="[1, 2]")
    frame = await receive(communicator)
    await communicator.disconnect()

    assert frame["events"][0]["content"] == "[1, 2]"


async def test_interrupt_command_accepted(alice, monkeypatch):
    calls = []
    monkeypatch.setattr(services, "interrupt", lambda conversation: calls.append(conversation.id))
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    await communicator.send_to(text_data=json.dumps({"type": "interrupt"}))
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()

    assert calls == [conversation.id]


async def test_service_failure_sends_error_frame(alice, monkeypatch):
    def broken(conversation, text):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "send_message", broken)
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    await communicator.send_to(text_data="hello")
    error = await receive(communicator)
    await communicator.send_to(text_data=json.dumps({"type": "dance"}))
    still_open = await receive(communicator)
    await communicator.disconnect()

    assert error["error"] is True
    assert "boom" not in error["message"]
    assert still_open["error"] is True


async def test_end_session_closes_socket(alice):
    conversation = await new_session(alice[0])
    communicator = await connect(conversation, alice[1])
    await receive(communicator)

    await sync_to_async(services.end_session)(conversation)
    final = await receive(communicator)
    closed = await communicator.receive_output(timeout=5)

    assert final["events"][-1]["status"] == "ended"
    assert final["has_more"] is False
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 1000


async def test_open_mode_token_owns_session(settings):
    settings.ALLOW_ANY_TOKEN = True
    owner = await sync_to_async(open_mode_owner)("my-token")
    conversation = await new_session(owner)

    communicator = await connect(conversation, "my-token")
    frame = await receive(communicator)
    await communicator.disconnect()
    stranger = WebsocketCommunicator(
        application,
        f"/ws/{conversation.id.hex}",
        headers=[(b"authorization", b"Bearer other-token")],
    )
    await stranger.connect()
    closed = await stranger.receive_output(timeout=5)

    assert frame["events"][0]["type"] == "status"
    assert closed["code"] == 4004
