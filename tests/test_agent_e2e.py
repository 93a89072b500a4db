"""Real agents end to end: daphne with the agent-server runtime, driven by the scripted LLM.

Most tests share one daphne process (`agent_daphne`), which launches and supervises its own
agent server as in production. The restart tests start daphne processes of their own.
"""
import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from websockets.exceptions import ConnectionClosed

from tests import servers
from tests.agent_fixtures import (
    DAPHNE_LLM_API_KEY,
    DAPHNE_SECRET_KEY,
    agent_runtime_environment,
    embedded_server_state,
    wait_for_embedded_server,
)

pytestmark = [pytest.mark.agent, pytest.mark.asyncio]

# Seconds to wait for one agent turn. The scripted LLM's turns take one to three seconds here.
TURN_SECONDS = 60
# Seconds within which an LLM failure must show as an error. The LLM client times out after 3.
LLM_ERROR_SECONDS = 15
RECEIVE_SECONDS = 30
MAX_FRAMES = 200
POLL_SECONDS = 0.2


def auth(key):
    return {"Authorization": f"Bearer {key}"}


async def call(server, method, path, key, body=None):
    """Send a request to `server` off the event loop and return (status, JSON body)."""
    status, reply, _ = await asyncio.to_thread(server.request, method, path, key, body)
    return status, reply


async def create_session(server, key, **body):
    status, reply = await call(server, "POST", "/sessions", key, body)
    assert status == 201, reply
    return reply["conversation_id"]


async def send_message(server, key, conversation_id, content):
    return await call(server, "POST", f"/sessions/{conversation_id}/messages", key, {"content": content})


async def stored_events(server, key, conversation_id):
    """Return every stored event of the session through GET .../events, page by page."""
    events = []
    for _ in range(100):
        after = events[-1]["id"] if events else 0
        status, reply = await call(
            server, "GET", f"/sessions/{conversation_id}/events?after={after}&limit=500", key
        )
        assert status == 200, reply
        events.extend(reply["events"])
        if not reply["has_more"]:
            return events
    raise AssertionError(f"Session {conversation_id} has more than 100 pages of events")


async def session_status(server, key, conversation_id):
    status, reply = await call(server, "GET", f"/sessions/{conversation_id}", key)
    assert status == 200, reply
    return reply["status"]


def summarize(events):
    return [(event["id"], event["type"], event.get("status"), event["content"][:120]) for event in events]


async def wait_for_events(server, key, conversation_id, predicate, timeout=TURN_SECONDS):
    """Poll the stored events until `predicate(events)` holds, and return them."""
    deadline = time.monotonic() + timeout
    events = []
    while time.monotonic() < deadline:
        events = await stored_events(server, key, conversation_id)
        if predicate(events):
            return events
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"Events of {conversation_id} never matched in {timeout} s: {summarize(events)}")


async def wait_for_status(server, key, conversation_id, statuses, timeout=TURN_SECONDS):
    """Poll the session until its status is one of `statuses`, and return that status."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = await session_status(server, key, conversation_id)
        if status in statuses:
            return status
        await asyncio.sleep(POLL_SECONDS)
    events = await stored_events(server, key, conversation_id)
    raise AssertionError(f"Session stayed {status!r}, expected one of {statuses}: {summarize(events)}")


def has_message(content):
    return lambda events: any(e["type"] == "message" and e["content"] == content for e in events)


async def wait_for_answer(server, key, conversation_id, content):
    """Wait for the agent's message `content` and the end of its turn, and return all events."""
    await wait_for_events(server, key, conversation_id, has_message(content))
    await wait_for_status(server, key, conversation_id, {"finished"})
    return await stored_events(server, key, conversation_id)


def of_type(events, type):
    return [event for event in events if event["type"] == type]


def statuses_of(events):
    return [event["status"] for event in events if event["type"] == "status"]


def ids_of(events):
    return [event["id"] for event in events]


async def receive_frame(socket):
    return json.loads(await asyncio.wait_for(socket.recv(), RECEIVE_SECONDS))


async def receive_until(socket, predicate):
    """Receive frames until `predicate(frames received so far)` holds, and return them."""
    frames = []
    for _ in range(MAX_FRAMES):
        frames.append(await receive_frame(socket))
        if predicate(frames):
            return frames
    raise AssertionError(f"No matching frame in {frames}")


def frame_events(frames):
    return [event for frame in frames for event in frame.get("events", [])]


@sync_to_async
def conversation_row(conversation_id):
    from sessions.models import Conversation

    return Conversation.objects.get(pk=conversation_id)


@sync_to_async
def stored_rows(conversation_id):
    from sessions.models import Event

    return list(Event.objects.filter(conversation_id=conversation_id).order_by("seq"))


def files_containing(root, needle):
    """Return the regular files under `root` whose bytes contain `needle`."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if not path.is_file():
                continue
            try:
                if needle.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


# The example flow of the README.

async def test_example_flow_runs_agent(agent_daphne, alice):
    key = alice[1]
    conversation_id = await create_session(agent_daphne, key, initial_message="RUN echo hi > created.txt")
    url = f"{agent_daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(url, additional_headers=auth(key)) as socket:
        first_turn = await receive_until(socket, lambda frames: frames[-1]["has_more"] is False)
        await socket.send(json.dumps("SAY hello from the agent"))
        second_turn = await receive_until(
            socket,
            lambda frames: frames[-1]["has_more"] is False
            and has_message("hello from the agent")(frame_events(frames)),
        )

    events = frame_events(first_turn + second_turn)
    assert ids_of(events) == list(range(1, len(events) + 1))
    assert events == await stored_events(agent_daphne, key, conversation_id)
    [command] = of_type(events, "command")
    assert command["content"] == "echo hi > created.txt"
    assert command["source"] == "agent"
    [output] = of_type(events, "command_output")
    assert output["exit_code"] == 0
    assert output["source"] == "environment"
    assert of_type(events, "message")[-1]["content"] == "hello from the agent"
    user_messages = [event["content"] for event in of_type(events, "user_message")]
    assert user_messages == ["RUN echo hi > created.txt", "SAY hello from the agent"]
    assert statuses_of(events) == ["starting", "running", "finished", "running", "finished"]
    assert all(frame["has_more"] for frame in first_turn[:-1])
    assert first_turn[-1]["events"][-1]["status"] == "finished"
    assert second_turn[-1]["events"][-1]["status"] == "finished"
    conversation = await conversation_row(conversation_id)
    assert conversation.workspace.startswith(str(agent_daphne.data_dir))
    assert (Path(conversation.workspace) / "created.txt").read_text() == "hi\n"


# Cloning a repository over smart HTTP with a token.

async def test_clone_with_token_over_http(agent_daphne, alice, git_http_server):
    key = alice[1]
    token = git_http_server.token
    git_http_server.create_repository("octo/hello", {"README.md": "hello from the seed\n"})

    conversation_id = await create_session(
        agent_daphne, key, selected_repository="octo/hello", github_token=token,
        initial_message="RUN cat hello/README.md",
    )
    events = await wait_for_events(
        agent_daphne, key, conversation_id, lambda events: of_type(events, "message")
    )
    await wait_for_status(agent_daphne, key, conversation_id, {"finished"})

    [output] = of_type(events, "command_output")
    assert "hello from the seed" in output["content"]
    conversation = await conversation_row(conversation_id)
    clone = Path(conversation.workspace) / "hello"
    assert (clone / "README.md").read_text() == "hello from the seed\n"
    assert token not in (clone / ".git" / "config").read_text()
    for row in await stored_rows(conversation_id):
        assert token not in row.content
        assert token not in json.dumps(row.data)
        assert token not in json.dumps(row.payload)
    assert files_containing(agent_daphne.data_dir, token) == []
    requests = git_http_server.requests_for("octo/hello")
    # The clone URL carries no credentials, so git runs the askpass script after a 401.
    assert requests[0][2] == 401
    assert any(status == 200 for _, _, status in requests)


async def test_clone_wrong_token_fails(agent_daphne, alice, git_http_server):
    key = alice[1]
    git_http_server.create_repository("octo/guarded", {"README.md": "guarded\n"})

    conversation_id = await create_session(
        agent_daphne, key, selected_repository="octo/guarded", github_token="ghp_wrongtoken",
        initial_message="SAY never sent",
    )

    assert await wait_for_status(agent_daphne, key, conversation_id, {"error", "finished"}) == "error"
    events = await stored_events(agent_daphne, key, conversation_id)
    [error] = of_type(events, "error")
    assert error["code"] == "CloneFailed"
    assert "Cloning octo/guarded" in error["content"]
    assert "Authentication failed" in error["content"]
    assert "Check the GitHub token" in error["content"]
    assert "ghp_wrongtoken" not in error["content"]
    assert of_type(events, "message") == []


async def test_clone_missing_repository_fails(agent_daphne, alice, git_http_server):
    key = alice[1]

    conversation_id = await create_session(
        agent_daphne, key, selected_repository="octo/missing", github_token=git_http_server.token,
        initial_message="SAY never sent",
    )

    assert await wait_for_status(agent_daphne, key, conversation_id, {"error", "finished"}) == "error"
    events = await stored_events(agent_daphne, key, conversation_id)
    [error] = of_type(events, "error")
    assert error["code"] == "CloneFailed"
    assert "Cloning octo/missing" in error["content"]
    assert "not found" in error["content"]
    assert git_http_server.token not in error["content"]


async def test_failed_clone_retried_by_message(agent_daphne, alice, git_http_server):
    key = alice[1]
    conversation_id = await create_session(
        agent_daphne, key, selected_repository="octo/later", github_token=git_http_server.token,
        initial_message="SAY never sent",
    )
    assert await wait_for_status(agent_daphne, key, conversation_id, {"error", "finished"}) == "error"
    git_http_server.create_repository("octo/later", {"README.md": "pushed after the first try\n"})

    await send_message(agent_daphne, key, conversation_id, "RUN cat later/README.md")
    events = await wait_for_events(
        agent_daphne, key, conversation_id, lambda events: of_type(events, "message")
    )
    await wait_for_status(agent_daphne, key, conversation_id, {"finished"})

    [output] = of_type(events, "command_output")
    assert output["content"].strip() == "pushed after the first try"
    assert len(of_type(events, "error")) == 1


# LLM failures.

@pytest.mark.parametrize(
    ("directive", "code", "expected"),
    [
        ("FAIL 500", "LLMServiceUnavailableError", "failed or sent an invalid answer"),
        ("FAIL notjson", "LLMServiceUnavailableError", "failed or sent an invalid answer"),
        ("FAIL notcompletion", "LLMServiceUnavailableError", "failed or sent an invalid answer"),
        ("FAIL timeout", "LLMTimeoutError", "did not answer within 3 seconds"),
        ("FAIL 404", "NotFoundError", "does not know the model 'openai/scripted'"),
    ],
)
async def test_llm_failure_then_recovery(agent_daphne, alice, daphne_llm, directive, code, expected):
    key = alice[1]
    started = time.monotonic()
    conversation_id = await create_session(agent_daphne, key, initial_message=directive)

    events = await wait_for_events(
        agent_daphne, key, conversation_id, lambda events: of_type(events, "error"),
        timeout=LLM_ERROR_SECONDS,
    )
    elapsed = time.monotonic() - started
    status = await wait_for_status(agent_daphne, key, conversation_id, {"error", "finished"})
    status_code, reply = await send_message(agent_daphne, key, conversation_id, "SAY recovered")
    recovered = await wait_for_answer(agent_daphne, key, conversation_id, "recovered")

    [error] = of_type(events, "error")
    assert error["code"] == code
    assert expected in error["content"]
    assert daphne_llm.base_url in error["content"]
    assert DAPHNE_LLM_API_KEY not in error["content"]
    assert elapsed < LLM_ERROR_SECONDS
    assert status == "error"
    assert status_code == 202
    assert reply["status"] == "accepted"
    assert [event["content"] for event in of_type(recovered, "message")] == ["recovered"]
    assert ids_of(recovered) == list(range(1, len(recovered) + 1))


async def test_llm_down_then_recovery(agent_daphne, alice, daphne_llm):
    key = alice[1]
    daphne_llm.stop()
    try:
        conversation_id = await create_session(agent_daphne, key, initial_message="SAY unheard")
        events = await wait_for_events(
            agent_daphne, key, conversation_id, lambda events: of_type(events, "error"),
            timeout=LLM_ERROR_SECONDS,
        )
        status = await wait_for_status(agent_daphne, key, conversation_id, {"error", "finished"})
    finally:
        daphne_llm.start()

    await send_message(agent_daphne, key, conversation_id, "SAY recovered")
    recovered = await wait_for_answer(agent_daphne, key, conversation_id, "recovered")

    [error] = of_type(events, "error")
    assert error["code"] == "LLMServiceUnavailableError"
    assert f"The LLM endpoint {daphne_llm.base_url} could not be reached" in error["content"]
    assert status == "error"
    assert [event["content"] for event in of_type(recovered, "message")] == ["recovered"]


# Messages over REST, and interrupts.

async def test_rest_message_gets_answer(agent_daphne, alice):
    key = alice[1]
    conversation_id = await create_session(agent_daphne, key)
    await wait_for_status(agent_daphne, key, conversation_id, {"idle"})

    status, reply = await send_message(agent_daphne, key, conversation_id, "SAY over rest")
    events = await wait_for_answer(agent_daphne, key, conversation_id, "over rest")

    assert status == 202
    assert reply["status"] == "accepted"
    assert events[reply["event_id"] - 1]["content"] == "SAY over rest"
    assert statuses_of(events) == ["starting", "idle", "running", "finished"]


async def start_long_command(server, key):
    conversation_id = await create_session(server, key, initial_message="RUN sleep 30")
    await wait_for_events(server, key, conversation_id, lambda events: of_type(events, "command"))
    return conversation_id


async def assert_usable_after_interrupt(server, key, conversation_id, interrupted_at):
    """Assert that the session paused at once and that its terminal runs the next command."""
    await wait_for_status(server, key, conversation_id, {"paused"}, timeout=15)
    paused_after = time.monotonic() - interrupted_at
    await send_message(server, key, conversation_id, "RUN echo still-usable")
    events = await wait_for_events(
        server, key, conversation_id,
        lambda events: any("still-usable" in e["content"] for e in of_type(events, "command_output")),
        timeout=20,
    )
    await wait_for_status(server, key, conversation_id, {"finished"})

    assert paused_after < 10
    # Well before `sleep 30` could have ended by itself.
    assert time.monotonic() - interrupted_at < 25
    assert "paused" in statuses_of(events)
    [output] = of_type(events, "command_output")
    assert output["exit_code"] == 0


async def test_rest_interrupt_stops_command(agent_daphne, alice):
    key = alice[1]
    conversation_id = await start_long_command(agent_daphne, key)

    status, reply = await call(agent_daphne, "POST", f"/sessions/{conversation_id}/interrupt", key)
    interrupted_at = time.monotonic()

    assert status == 202
    assert reply["status"] == "accepted"
    await assert_usable_after_interrupt(agent_daphne, key, conversation_id, interrupted_at)


async def test_socket_interrupt_stops_command(agent_daphne, alice):
    key = alice[1]
    conversation_id = await start_long_command(agent_daphne, key)
    url = f"{agent_daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(url, additional_headers=auth(key)) as socket:
        await receive_frame(socket)
        await socket.send(json.dumps({"type": "interrupt"}))
        interrupted_at = time.monotonic()
        frames = await receive_until(
            socket, lambda frames: "paused" in statuses_of(frames[-1]["events"])
        )

    assert frames[-1]["has_more"] is False
    await assert_usable_after_interrupt(agent_daphne, key, conversation_id, interrupted_at)


# The agent server dies.

def parent_pid(pid):
    """Return the parent process id of `pid`, or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # The command name in brackets may contain spaces; the fields after it do not.
    return int(stat.rsplit(")", 1)[1].split()[1])


async def wait_for_log(server, text, timeout=10):
    """Wait until the log of daphne process `server` contains `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in Path(server.log_path).read_text(errors="replace"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} not logged in {timeout} s: {server.log_tail()}")


async def test_agent_server_crash_recovers(agent_daphne, alice):
    key = alice[1]
    conversation_id = await start_long_command(agent_daphne, key)
    killed = embedded_server_state(agent_daphne.data_dir)
    # Kill only the agent server that this test's daphne process launched.
    assert parent_pid(killed["pid"]) == agent_daphne.process.pid

    os.kill(killed["pid"], signal.SIGKILL)
    # Logged once the supervisor has seen the exit and recorded the error.
    await wait_for_log(agent_daphne, f"Embedded agent server (pid {killed['pid']}) exited")
    create_status, create_reply = await call(
        agent_daphne, "POST", "/sessions", key, {"initial_message": "SAY too early"}
    )
    events = await wait_for_events(
        agent_daphne, key, conversation_id, lambda events: of_type(events, "error"), timeout=15
    )
    restarted = await asyncio.to_thread(
        wait_for_embedded_server, agent_daphne.data_dir, replacing_pid=killed["pid"]
    )
    message_status, _ = await send_message(agent_daphne, key, conversation_id, "SAY back again")
    recovered = await wait_for_answer(agent_daphne, key, conversation_id, "back again")
    _, listing = await call(agent_daphne, "GET", "/sessions", key)

    assert create_status == 503
    assert "agent server is not running" in create_reply["message"]
    assert listing["count"] == 1
    [error] = of_type(events, "error")
    assert error["code"] == "AgentServerUnreachable"
    assert killed["url"] in error["content"]
    assert restarted["pid"] != killed["pid"]
    assert message_status == 202
    assert ids_of(recovered) == list(range(1, len(recovered) + 1))


# The API server restarts in the middle of a turn.

async def test_api_restart_mid_turn(
    transactional_db, alice, agent_daphne_stopped, embedded_agent_server, daphne_llm, tmp_path
):
    key = alice[1]
    environment = agent_runtime_environment(daphne_llm, tmp_path / "data")
    # An external agent server, because an embedded one stops with the daphne that launched it.
    environment.update(
        OPENHANDS_AGENT_SERVER_URL=embedded_agent_server.url,
        OPENHANDS_AGENT_SERVER_API_KEY=embedded_agent_server.api_key,
        OPENHANDS_AGENT_SERVER_WORKSPACE_ROOT=str(tmp_path / "workspaces"),
        # Far longer than the test, so only the dead-owner rule can hand the lease over in time.
        OPENHANDS_API_RELAY_LEASE_SECONDS="300",
    )
    first = servers.DaphneServer(extra_env=environment, log_path=tmp_path / "first.log").start()
    try:
        conversation_id = await create_session(first, key, initial_message="RUN sleep 3; echo done")
        await wait_for_events(first, key, conversation_id, lambda events: of_type(events, "command"))
    finally:
        first.stop()

    second = servers.DaphneServer(extra_env=environment, log_path=tmp_path / "second.log").start()
    try:
        second_started = time.monotonic()
        await wait_for_events(
            second, key, conversation_id, lambda events: of_type(events, "message"), timeout=30
        )
        resumed_after = time.monotonic() - second_started
        await wait_for_status(second, key, conversation_id, {"finished"})
        events = await stored_events(second, key, conversation_id)
        rows = await stored_rows(conversation_id)
        conversation = await conversation_row(conversation_id)
    finally:
        await call(second, "DELETE", f"/sessions/{conversation_id}", key)
        second.stop()

    assert first.process.returncode == 0
    assert ids_of(events) == list(range(1, len(events) + 1))
    assert [event["type"] for event in events] == [
        "status", "user_message", "status", "command", "command_output", "message", "status",
    ]
    assert statuses_of(events) == ["starting", "running", "finished"]
    [output] = of_type(events, "command_output")
    assert output["content"].strip() == "done"
    assert output["exit_code"] == 0
    upstream_ids = [row.upstream_id for row in rows if row.upstream_id]
    assert len(upstream_ids) == len(set(upstream_ids))
    assert conversation.relay_owner.split(":")[1] == str(second.process.pid)
    assert resumed_after < 20


async def test_api_restart_pauses_embedded_turn(agent_daphne, alice):
    key = alice[1]
    conversation_id = await create_session(agent_daphne, key, initial_message="RUN sleep 3; echo done")
    await wait_for_events(agent_daphne, key, conversation_id, lambda events: of_type(events, "command"))
    stopped_server = embedded_server_state(agent_daphne.data_dir)

    # The embedded agent server stops with daphne and pauses the turn after the step in flight.
    agent_daphne.stop()
    agent_daphne.start()
    await asyncio.to_thread(
        wait_for_embedded_server, agent_daphne.data_dir, replacing_pid=stopped_server["pid"]
    )
    status = await wait_for_status(agent_daphne, key, conversation_id, {"paused", "finished"})
    paused = await wait_for_events(
        agent_daphne, key, conversation_id, lambda events: of_type(events, "command_output")
    )
    await send_message(agent_daphne, key, conversation_id, "SAY resumed")
    events = await wait_for_answer(agent_daphne, key, conversation_id, "resumed")
    rows = await stored_rows(conversation_id)

    assert status == "paused"
    assert ids_of(events) == list(range(1, len(events) + 1))
    # The paused status and the output of the step in flight arrive in either order.
    assert sorted(event["type"] for event in paused) == [
        "command", "command_output", "status", "status", "status", "user_message",
    ]
    [output] = of_type(events, "command_output")
    assert output["content"].strip() == "done"
    assert statuses_of(events) == ["starting", "running", "paused", "running", "finished"]
    upstream_ids = [row.upstream_id for row in rows if row.upstream_id]
    assert len(upstream_ids) == len(set(upstream_ids))


# The agent's environment.

async def test_agent_env_hides_secrets(agent_daphne, alice):
    key = alice[1]
    conversation_id = await create_session(agent_daphne, key, initial_message="RUN env")

    events = await wait_for_events(
        agent_daphne, key, conversation_id, lambda events: of_type(events, "command_output")
    )

    [output] = of_type(events, "command_output")
    environment = output["content"]
    state = embedded_server_state(agent_daphne.data_dir)
    secret_key_file = agent_daphne.data_dir / "agent-server" / "secret_key"
    assert "HOME=" in environment
    assert DAPHNE_SECRET_KEY not in environment
    assert DAPHNE_LLM_API_KEY not in environment
    assert servers.test_database_url() not in environment
    assert "DATABASE_URL" not in environment
    assert state["api_key"] not in environment
    assert secret_key_file.read_text().strip() not in environment
    if os.environ.get("REDIS_URL"):
        assert os.environ["REDIS_URL"] not in environment


# DELETE.

async def test_delete_ends_agent(agent_daphne, alice):
    key = alice[1]
    conversation_id = await start_long_command(agent_daphne, key)
    conversation = await conversation_row(conversation_id)
    state = embedded_server_state(agent_daphne.data_dir)
    url = f"{agent_daphne.ws_url}/ws/{conversation_id}"

    async with websockets.connect(url, additional_headers=auth(key)) as first, \
            websockets.connect(url, additional_headers=auth(key)) as second:
        await receive_frame(first)
        await receive_frame(second)
        status, reply = await call(agent_daphne, "DELETE", f"/sessions/{conversation_id}", key)
        finals = []
        for socket in (first, second):
            frames = await receive_until(
                socket, lambda frames: "ended" in statuses_of(frames[-1]["events"])
            )
            finals.append(frames[-1])
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(socket.recv(), RECEIVE_SECONDS)
    upstream = await asyncio.to_thread(
        httpx.get,
        f"{state['url']}/api/conversations/{conversation.upstream_id}",
        headers={"X-Session-API-Key": state["api_key"]},
        timeout=10,
    )

    assert status == 200
    assert reply["status"] == "success"
    assert first.close_code == 1000
    assert second.close_code == 1000
    assert finals[0]["has_more"] is False
    assert finals[1]["has_more"] is False
    assert upstream.status_code == 404
    assert await session_status(agent_daphne, key, conversation_id) == "ended"
    events = await stored_events(agent_daphne, key, conversation_id)
    assert events[-1]["status"] == "ended"
