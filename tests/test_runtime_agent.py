"""The agent runtime against a real agent server subprocess driven by the scripted LLM.

These tests exercise the REST client, the event mapping and the relay directly, with an
in-memory store in place of the database.
"""
import asyncio
import uuid

import pytest
import pytest_asyncio

from sessions.runtime.agent_spec import describe_llm, start_conversation_body
from sessions.runtime.client import AgentServerClient, AgentServerError
from sessions.runtime.event_mapping import map_event, parse_upstream_timestamp
from sessions.runtime.relay import EventRelay
from sessions.runtime.supervisor import free_port

FINAL_STATUSES = {"finished", "error", "stuck", "paused", "idle"}
WAIT_SECONDS = 40


class MemoryStore:
    """A relay store that keeps events in lists and de-duplicates by upstream id like the DB."""

    def __init__(self, last_timestamp=None):
        self.events = []
        self.errors = []
        self.statuses = []
        self.upstream_ids = set()
        self.last_timestamp = last_timestamp
        self.changed = asyncio.Event()

    async def record(self, conversation_id, event):
        if event.upstream_id in self.upstream_ids:
            return
        self.upstream_ids.add(event.upstream_id)
        self.events.append(event)
        self.changed.set()

    async def record_error(self, conversation_id, message, code):
        self.errors.append((code, message))
        self.changed.set()

    async def set_status(self, conversation_id, status, detail):
        self.statuses.append(status)
        self.changed.set()

    async def last_upstream_timestamp(self, conversation_id):
        return self.last_timestamp

    def of_type(self, type):
        return [event for event in self.events if event.type == type]

    async def wait_for(self, predicate, timeout=WAIT_SECONDS):
        async def poll():
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(poll(), timeout)


class AgentHarness:
    """One upstream conversation on the test agent server, followed by a relay."""

    def __init__(self, server, workspace_root):
        self.server = server
        self.client = AgentServerClient(server.url, server.api_key)
        self.workspace_root = workspace_root
        self.store = MemoryStore()
        self.relay = None
        self.task = None
        self.upstream_id = None

    async def start(self, message=None):
        self.upstream_id = str(uuid.uuid4())
        workspace = str(self.workspace_root / self.upstream_id)
        await self.client.create_conversation(start_conversation_body(self.upstream_id, workspace))
        self.relay = self.make_relay(self.store)
        self.task = asyncio.create_task(self.relay.run())
        if message:
            await self.client.send_message(self.upstream_id, message)
        return workspace

    def make_relay(self, store, apply_first_snapshot=False):
        async def server():
            return self.server.url, self.server.api_key

        return EventRelay(
            self.upstream_id, self.upstream_id, server, store, describe_llm(),
            apply_first_snapshot=apply_first_snapshot,
        )

    async def wait_final(self):
        await self.store.wait_for(lambda s: s.statuses and s.statuses[-1] in FINAL_STATUSES and s.statuses[-1] != "idle")
        return self.store.statuses[-1]

    async def close(self):
        if self.relay:
            self.relay.stop()
            self.task.cancel()
        try:
            await self.client.delete_conversation(self.upstream_id)
        finally:
            await self.client.close()


@pytest_asyncio.fixture
async def harness(embedded_agent_server, llm_settings, tmp_path):
    harness = AgentHarness(embedded_agent_server, tmp_path)
    yield harness
    await harness.close()


# Mapping of recorded upstream shapes (openhands-agent-server 1.58.2), no server needed.

def test_timestamp_naive_is_utc():
    parsed = parse_upstream_timestamp("2026-12-04T20:31:36.295580")

    assert parsed.utcoffset().total_seconds() == 0
    assert parsed.hour == 20


def test_timestamp_invalid_is_none():
    assert parse_upstream_timestamp("yesterday") is None
    assert parse_upstream_timestamp(None) is None


def test_map_terminal_action():
    upstream = {
        "id": "a1", "timestamp": "2026-12-04T20:31:36", "source": "agent", "kind": "ActionEvent",
        "thought": [{"type": "text", "text": "Let me look."}], "tool_name": "terminal",
        "action": {"command": "ls", "kind": "TerminalAction"},
    }

    events = map_event(upstream)

    assert [e.type for e in events] == ["thought", "command"]
    assert events[0].content == "Let me look."
    assert events[0].upstream_id == "a1:thought"
    assert events[1].content == "ls"
    assert events[1].upstream_id == "a1"
    assert events[1].source == "agent"
    assert events[1].payload is upstream


def test_map_terminal_observation():
    upstream = {
        "id": "o1", "timestamp": "2026-12-04T20:31:36", "source": "environment", "kind": "ObservationEvent",
        "tool_name": "terminal",
        "observation": {"content": [{"type": "text", "text": "hello"}], "exit_code": 0, "command": "echo hello", "is_error": False},
    }

    [event] = map_event(upstream)

    assert event.type == "command_output"
    assert event.content == "hello"
    assert event.data["exit_code"] == 0


def test_map_file_edit():
    upstream = {
        "id": "e1", "timestamp": "2026-12-04T20:31:36", "source": "agent", "kind": "ActionEvent",
        "thought": [], "tool_name": "file_editor",
        "action": {"command": "create", "path": "/w/a.txt", "file_text": "x\ny\n", "kind": "FileEditorAction"},
    }

    [event] = map_event(upstream)

    assert event.type == "file_edit"
    assert event.data["path"] == "/w/a.txt"
    assert event.data["summary"] == "created with 2 lines"


def test_map_drops_user_message_and_stats():
    user_message = {
        "id": "m1", "timestamp": "2026-12-04T20:31:36", "source": "user", "kind": "MessageEvent",
        "llm_message": {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    }
    stats = {"id": "s1", "timestamp": "2026-12-04T20:31:36", "source": "environment", "kind": "ConversationStateUpdateEvent", "key": "stats", "value": {}}
    system = {"id": "p1", "timestamp": "2026-12-04T20:31:36", "source": "agent", "kind": "SystemPromptEvent"}

    assert map_event(user_message) == []
    assert map_event(stats) == []
    assert map_event(system) == []


def test_map_conversation_error_names_endpoint():
    upstream = {
        "id": "x1", "timestamp": "2026-12-04T20:31:36", "source": "environment", "kind": "ConversationErrorEvent",
        "code": "LLMServiceUnavailableError",
        "detail": "litellm.InternalServerError: InternalServerError: OpenAIException - Connection error.",
    }

    [event] = map_event(upstream, {"base_url": "http://127.0.0.1:9/v1", "model": "openai/x", "timeout": 3})

    assert event.type == "error"
    assert "http://127.0.0.1:9/v1 could not be reached" in event.content
    assert "LLM_BASE_URL" in event.content


# A real agent server with the scripted LLM.

@pytest.mark.agent
@pytest.mark.asyncio
async def test_run_command_is_relayed(harness):
    await harness.start("RUN echo relay-check")

    assert await harness.wait_final() == "finished"
    [command] = harness.store.of_type("command")
    assert command.content == "echo relay-check"
    [output] = harness.store.of_type("command_output")
    assert "relay-check" in output.content
    assert output.data["exit_code"] == 0
    [message] = harness.store.of_type("message")
    assert "relay-check" in message.content
    assert harness.store.statuses[0] == "running"
    assert all(event.timestamp.tzinfo is not None for event in harness.store.events)
    assert harness.store.errors == []


@pytest.mark.agent
@pytest.mark.asyncio
async def test_say_is_relayed_as_message(harness):
    await harness.start("SAY plain words")

    assert await harness.wait_final() == "finished"
    [message] = harness.store.of_type("message")
    assert message.content == "plain words"
    assert message.source == "agent"


@pytest.mark.agent
@pytest.mark.asyncio
async def test_edit_creates_file(harness):
    workspace = await harness.start()
    path = f"{workspace}/notes.txt"
    await harness.client.send_message(harness.upstream_id, f"EDIT {path} written-by-agent")

    assert await harness.wait_final() == "finished"
    [edit] = harness.store.of_type("file_edit")
    assert edit.data["path"] == path
    with open(path) as handle:
        assert handle.read() == "written-by-agent"


@pytest.mark.agent
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        ("FAIL 500", "failed or sent an invalid answer"),
        ("FAIL notjson", "failed or sent an invalid answer"),
        ("FAIL notcompletion", "failed or sent an invalid answer"),
        ("FAIL timeout", "did not answer within 3 seconds"),
        ("FAIL 404", "does not know the model 'openai/scripted'"),
    ],
)
async def test_llm_failure_becomes_error(harness, directive, expected):
    await harness.start(directive)

    assert await harness.wait_final() == "error"
    # The agent server sends the error after the status change.
    await harness.store.wait_for(lambda s: s.of_type("error"), timeout=5)
    [error] = harness.store.of_type("error")
    assert expected in error.content
    assert harness.server.api_key not in error.content
    assert "scripted-test-key" not in error.content


@pytest.mark.agent
@pytest.mark.asyncio
async def test_unreachable_llm_named(harness, settings):
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    await harness.start("SAY never answered")

    assert await harness.wait_final() == "error"
    await harness.store.wait_for(lambda s: s.of_type("error"), timeout=5)
    [error] = harness.store.of_type("error")
    assert f"The LLM endpoint {settings.LLM_BASE_URL} could not be reached" in error.content


@pytest.mark.agent
@pytest.mark.asyncio
async def test_message_joins_running_turn(harness, scripted_llm):
    await harness.start("RUN sleep 2 && echo slow-done")
    await harness.store.wait_for(lambda s: s.of_type("command"))
    await harness.client.send_message(harness.upstream_id, "SAY joined the run")

    assert await harness.wait_final() == "finished"
    messages = [event.content for event in harness.store.of_type("message")]
    assert "joined the run" in messages
    # One run: the status went to running once.
    assert harness.store.statuses.count("running") == 1


@pytest.mark.agent
@pytest.mark.asyncio
async def test_interrupt_pauses_run(harness):
    await harness.start("RUN sleep 30")
    await harness.store.wait_for(lambda s: s.of_type("command"))

    await harness.client.interrupt(harness.upstream_id)

    await harness.store.wait_for(lambda s: "paused" in s.statuses, timeout=15)


@pytest.mark.agent
@pytest.mark.asyncio
async def test_resumed_relay_skips_stored_events(harness):
    await harness.start("RUN echo first-turn")
    assert await harness.wait_final() == "finished"
    harness.relay.stop()
    harness.task.cancel()

    last = harness.store.events[-1].payload["timestamp"]
    resumed = MemoryStore(last_timestamp=last)
    resumed.upstream_ids = set(harness.store.upstream_ids)
    relay = harness.make_relay(resumed, apply_first_snapshot=True)
    task = asyncio.create_task(relay.run())
    try:
        await resumed.wait_for(lambda s: s.statuses)
        await harness.client.send_message(harness.upstream_id, "SAY second-turn")
        await resumed.wait_for(lambda s: s.of_type("message"))
        await resumed.wait_for(lambda s: s.statuses and s.statuses[-1] == "finished")
    finally:
        relay.stop()
        task.cancel()

    assert [event.content for event in resumed.of_type("message")] == ["second-turn"]
    assert resumed.of_type("command") == []
    # The snapshot gives "finished" first, and the new turn ends finished again.
    assert resumed.statuses[0] == "finished", resumed.statuses
    assert resumed.statuses[-1] == "finished", resumed.statuses


@pytest.mark.agent
@pytest.mark.asyncio
async def test_unreachable_server_reported_once():
    store = MemoryStore()
    port = free_port()

    async def server():
        return f"http://127.0.0.1:{port}", "unused-key"

    relay = EventRelay("c1", str(uuid.uuid4()), server, store, {})
    task = asyncio.create_task(relay.run())
    try:
        await store.wait_for(lambda s: s.errors, timeout=10)
        # Back-off is 1 s, then 2 s: a few attempts fit in 4 s.
        await asyncio.sleep(4)
    finally:
        relay.stop()
        task.cancel()

    assert len(store.errors) == 1
    code, message = store.errors[0]
    assert code == "AgentServerUnreachable"
    assert f"http://127.0.0.1:{port}" in message


@pytest.mark.agent
@pytest.mark.asyncio
async def test_unknown_conversation_stops_relay(embedded_agent_server):
    store = MemoryStore()

    async def server():
        return embedded_agent_server.url, embedded_agent_server.api_key

    relay = EventRelay("c1", str(uuid.uuid4()), server, store, {})

    await asyncio.wait_for(relay.run(), timeout=15)

    assert store.errors == []


@pytest.mark.agent
@pytest.mark.asyncio
async def test_client_rejects_wrong_key(embedded_agent_server):
    client = AgentServerClient(embedded_agent_server.url, "wrong-key")
    try:
        with pytest.raises(AgentServerError) as raised:
            await client.get_conversation(str(uuid.uuid4()))
    finally:
        await client.close()

    assert raised.value.status_code == 401


# The runtime facade with the database, against the test agent server as an external server.

@pytest.fixture
def runtime(transactional_db, embedded_agent_server, llm_settings):
    from sessions.runtime.agent_server import AgentServerRuntime

    llm_settings.OPENHANDS_AGENT_SERVER_URL = [embedded_agent_server.url]
    llm_settings.OPENHANDS_AGENT_SERVER_API_KEY = embedded_agent_server.api_key
    runtime = AgentServerRuntime()
    yield runtime
    runtime.shutdown()


@pytest.fixture
def owner(transactional_db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create(username="runtime-owner")


def new_conversation(owner, **fields):
    from sessions.models import Conversation

    return Conversation.objects.create(owner=owner, **fields)


def wait_for_status(conversation, statuses, timeout=WAIT_SECONDS):
    """Poll the database until the session reaches one of `statuses`; return it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conversation.refresh_from_db()
        if conversation.status in statuses:
            return conversation.status
        time.sleep(0.2)
    raise AssertionError(f"Session stayed {conversation.status!r}, expected one of {statuses}")


def wait_for_events(conversation, predicate, timeout=WAIT_SECONDS):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(stored_events(conversation)):
            return
        time.sleep(0.2)
    raise AssertionError(f"Events never matched: {[e.type for e in stored_events(conversation)]}")


def stored_events(conversation):
    return list(conversation.events.order_by("seq"))


@pytest.mark.agent
def test_runtime_runs_first_message(runtime, owner):
    from sessions.services import record_user_message

    conversation = new_conversation(owner)
    record_user_message(conversation.id, "RUN echo through-runtime")

    runtime.start_session(conversation, "", "RUN echo through-runtime")

    conversation.refresh_from_db()
    assert conversation.upstream_id == str(conversation.id)
    assert conversation.agent_server_url == runtime._pick_external_server()
    assert wait_for_status(conversation, {"finished", "error"}) == "finished"
    events = stored_events(conversation)
    types = [event.type for event in events]
    assert types[0] == "user_message"
    assert "command" in types
    assert "command_output" in types
    assert types.count("message") == 1
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert all(event.upstream_id for event in events if event.type in ("command", "message"))


@pytest.mark.agent
def test_runtime_send_message_after_finish(runtime, owner):
    conversation = new_conversation(owner)
    runtime.start_session(conversation, "", "SAY first")
    assert wait_for_status(conversation, {"finished", "error"}) == "finished"

    runtime.send_message(conversation, "SAY second")

    wait_for_events(conversation, lambda events: sum(e.type == "message" for e in events) == 2)
    assert wait_for_status(conversation, {"finished", "error"}) == "finished"
    events = stored_events(conversation)
    assert [event.content for event in events if event.type == "message"] == ["first", "second"]
    statuses = [event.data["status"] for event in events if event.type == "status"]
    assert statuses.count("running") == 2


@pytest.mark.agent
def test_runtime_error_then_retry(runtime, owner):
    conversation = new_conversation(owner)
    runtime.start_session(conversation, "", "FAIL 500")
    assert wait_for_status(conversation, {"finished", "error"}) == "error"

    runtime.send_message(conversation, "SAY recovered")

    assert wait_for_status(conversation, {"finished"}) == "finished", [(e.type, e.content[:200]) for e in stored_events(conversation)]
    events = stored_events(conversation)
    assert any(event.type == "error" and "failed or sent an invalid answer" in event.content for event in events)
    assert [event.content for event in events if event.type == "message"] == ["recovered"]


@pytest.mark.agent
def test_runtime_end_deletes_upstream(runtime, owner, embedded_agent_server):
    import httpx

    conversation = new_conversation(owner)
    runtime.start_session(conversation, "", "SAY bye")
    assert wait_for_status(conversation, {"finished", "error"}) == "finished"

    runtime.end_session(conversation)

    response = httpx.get(
        f"{embedded_agent_server.url}/api/conversations/{conversation.upstream_id}",
        headers={"X-Session-API-Key": embedded_agent_server.api_key},
    )
    assert response.status_code == 404
    assert conversation.id not in runtime._relays


@pytest.mark.agent
def test_runtime_clone_keeps_token_out(runtime, owner, embedded_agent_server, tmp_path, settings):
    import subprocess

    origin = tmp_path / "git" / "octo" / "hello.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(origin)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "--quiet", str(seed)], check=True)
    (seed / "README.md").write_text("hello from the seed\n")
    git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "seed"], check=True)
    subprocess.run([*git, "push", "--quiet", str(origin), "HEAD:refs/heads/main"], check=True)
    subprocess.run(["git", "-C", str(origin), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    settings.GIT_BASE_URL = f"file://{tmp_path / 'git'}"
    token = "ghp_" + uuid.uuid4().hex

    conversation = new_conversation(owner, selected_repository="octo/hello")
    runtime.start_session(conversation, token, "RUN cat hello/README.md")

    assert wait_for_status(conversation, {"finished", "error"}) == "finished"
    conversation.refresh_from_db()
    output = [event.content for event in stored_events(conversation) if event.type == "command_output"]
    assert any("hello from the seed" in text for text in output)
    leaks = subprocess.run(
        ["grep", "-rl", token, str(embedded_agent_server.state_dir)], capture_output=True, text=True
    )
    assert leaks.stdout == ""
    for event in stored_events(conversation):
        assert token not in event.content
        assert token not in str(event.payload)


# Supervision of the embedded agent server.

SUPERVISED_CHILD = """
import sys, time
from sessions.runtime.supervisor import EmbeddedAgentServer

server = EmbeddedAgentServer(sys.argv[1])
server.start()
if not server.wait_ready(120):
    sys.exit(2)
print(server._process.pid, flush=True)
time.sleep(600)
"""


def process_exists(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.agent
def test_server_dies_with_its_launcher(tmp_path):
    import signal
    import subprocess
    import sys

    launcher = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED_CHILD, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=str(tmp_path.parent),
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])},
    )
    try:
        server_pid = int(launcher.stdout.readline())
        assert process_exists(server_pid)

        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)

        assert wait_until(lambda: not process_exists(server_pid), timeout=20)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=10)


@pytest.mark.agent
def test_server_restarts_after_crash(tmp_path):
    import signal

    from sessions.runtime.supervisor import EmbeddedAgentServer

    server = EmbeddedAgentServer(tmp_path)
    server.start()
    try:
        assert server.wait_ready(120)
        first_pid = server._process.pid

        server._process.send_signal(signal.SIGKILL)

        assert wait_until(lambda: server._process.pid != first_pid and server.is_ready(), timeout=120)
        assert server.last_error == ""
    finally:
        server.stop()

    assert not process_exists(server._process.pid)


def test_check_available_names_missing_model(settings):
    from sessions.runtime import RuntimeUnavailable
    from sessions.runtime.agent_server import AgentServerRuntime

    settings.LLM_MODEL = ""
    settings.OPENHANDS_AGENT_SERVER_URL = []

    with pytest.raises(RuntimeUnavailable) as raised:
        AgentServerRuntime().check_available()

    assert "set LLM_MODEL" in str(raised.value)


def test_check_available_names_unreachable_server(settings):
    from sessions.runtime import RuntimeUnavailable
    from sessions.runtime.agent_server import AgentServerRuntime

    settings.LLM_MODEL = "openai/scripted"
    url = f"http://127.0.0.1:{free_port()}"
    settings.OPENHANDS_AGENT_SERVER_URL = [url]

    with pytest.raises(RuntimeUnavailable) as raised:
        AgentServerRuntime().check_available()

    assert url in str(raised.value)
    assert "OPENHANDS_AGENT_SERVER_URL" in str(raised.value)


@pytest.mark.agent
def test_embedded_runtime_runs_session(transactional_db, llm_settings, owner, tmp_path):
    from sessions.runtime.agent_server import EMBEDDED_PREFIX, AgentServerRuntime

    llm_settings.OPENHANDS_AGENT_SERVER_URL = []
    llm_settings.DATA_DIR = tmp_path
    runtime = AgentServerRuntime()
    try:
        runtime.check_available()
        conversation = new_conversation(owner)

        runtime.start_session(conversation, "", "RUN echo embedded-ok")

        conversation.refresh_from_db()
        assert conversation.agent_server_url.startswith(EMBEDDED_PREFIX)
        assert conversation.workspace.startswith(str(tmp_path))
        assert wait_for_status(conversation, {"finished", "error"}, timeout=120) == "finished"
        outputs = [e.content for e in stored_events(conversation) if e.type == "command_output"]
        assert any("embedded-ok" in text for text in outputs)
    finally:
        runtime.shutdown()
