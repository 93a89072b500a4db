"""Two API server processes behind one PostgreSQL database and one Redis act as one service.

Each test starts two daphne processes (A and B) with the agent-server runtime, pointed at two
external agent servers and the scripted LLM. Their channel layer is a redis-server of the test's
own on a free port, so the tests may restart it and never touch the machine's Redis. Every
server binds to 127.0.0.1.
"""
import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from sessions.models import Conversation, Event
from tests.agent_fixtures import LLM_TEST_TIMEOUT_SECONDS, start_agent_server
from tests.servers import DaphneServer, free_port

USES_POSTGRESQL = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"

pytestmark = [
    pytest.mark.agent,
    pytest.mark.asyncio,
    pytest.mark.skipif(
        not (USES_POSTGRESQL and os.environ.get("REDIS_URL")),
        reason="several API processes need a shared PostgreSQL and Redis: set DATABASE_URL to "
        "a postgres:// URL and REDIS_URL",
    ),
]

# Short leases so that a takeover happens within seconds; renewed every third of this.
LEASE_SECONDS = 4
# Bound on any wait for the agent or for a frame.
WAIT_SECONDS = 60
REDIS_START_SECONDS = 10
REDIS_OUTAGE_SECONDS = 4
FINAL_STATUSES = {"finished", "error", "stuck", "paused"}


# Servers

class RedisServer:
    """A redis-server subprocess on a free 127.0.0.1 port, without persistence."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed")
        log = open(self.directory / "redis.log", "ab")
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_until_ready()
        return self

    def wait_until_ready(self):
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + REDIS_START_SECONDS
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def second_agent_server(tmp_path_factory, embedded_agent_server):
    """Another agent server subprocess with the same session API key as the first one."""
    from sessions.runtime.supervisor import EmbeddedAgentServer

    data_dir = tmp_path_factory.mktemp("agent-data-second")
    key_path = data_dir / "agent-server" / "session_api_key"
    key_path.parent.mkdir(parents=True)
    key_path.write_text(embedded_agent_server.api_key)

    server = start_agent_server(EmbeddedAgentServer(data_dir))
    yield server
    server.stop()


@pytest.fixture
def agent_urls(embedded_agent_server, second_agent_server):
    return [embedded_agent_server.url, second_agent_server.url]


@pytest.fixture
def cluster(transactional_db, redis_server, agent_urls, embedded_agent_server, scripted_llm, tmp_path):
    """Daphne processes A and B sharing the test database, the Redis and the agent servers."""
    environment = {
        "OPENHANDS_API_AGENT_RUNTIME": "agent-server",
        "OPENHANDS_AGENT_SERVER_URL": ",".join(agent_urls),
        "OPENHANDS_AGENT_SERVER_API_KEY": embedded_agent_server.api_key,
        "OPENHANDS_AGENT_SERVER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "OPENHANDS_API_RELAY_LEASE_SECONDS": str(LEASE_SECONDS),
        "REDIS_URL": redis_server.url,
        "LLM_MODEL": "openai/scripted",
        "LLM_API_KEY": "scripted-test-key",
        "LLM_BASE_URL": scripted_llm.base_url,
        "LLM_TIMEOUT": str(LLM_TEST_TIMEOUT_SECONDS),
        "LLM_NUM_RETRIES": "0",
    }
    servers = [
        DaphneServer(extra_env=environment, log_path=tmp_path / f"daphne-{name}.log")
        for name in ("a", "b")
    ]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.start(), servers))
    except Exception:
        for server in servers:
            if server.process is not None:
                server.stop()
        raise
    yield servers

    for server in servers:
        resume_if_stopped(server)
        server.stop()
    delete_upstream_conversations(agent_urls, embedded_agent_server.api_key)
    for server in servers:
        # Shown by pytest when the test failed.
        print(f"--- {server.log_path} ---\n{server.log_tail(80)}")


def resume_if_stopped(server):
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)


def delete_upstream_conversations(agent_urls, api_key):
    """Delete this test's conversations on the agent servers, so their shells stop."""
    upstream_ids = list(Conversation.objects.exclude(upstream_id="").values_list("upstream_id", flat=True))
    headers = {"X-Session-API-Key": api_key}
    for url in agent_urls:
        for upstream_id in upstream_ids:
            httpx.delete(f"{url}/api/conversations/{upstream_id}", headers=headers, timeout=10)


# Requests and sockets

def auth(key):
    return {"Authorization": f"Bearer {key}"}


async def request(server, method, path, key, body=None):
    return await asyncio.to_thread(server.request, method, path, key, body)


async def create_session(server, key, **body):
    status, reply, _ = await request(server, "POST", "/sessions", key, body)
    assert status == 201, reply
    return reply["conversation_id"]


async def post_message(server, key, conversation_id, content):
    status, reply, _ = await request(
        server, "POST", f"/sessions/{conversation_id}/messages", key, {"content": content}
    )
    assert status == 202, reply


def connect(server, conversation_id, key, after=None):
    url = f"{server.ws_url}/ws/{conversation_id}"
    if after is not None:
        url += f"?after={after}"
    return websockets.connect(url, additional_headers=auth(key), open_timeout=WAIT_SECONDS)


async def receive_events(socket, timeout=WAIT_SECONDS):
    frame = json.loads(await asyncio.wait_for(socket.recv(), timeout))
    assert "events" in frame, frame
    return frame["events"]


async def receive_until(socket, predicate, timeout=WAIT_SECONDS):
    """Return the events received until one satisfies `predicate`, that one's frame included.

    `predicate` is called once per new event, in order, so it may keep state.
    """
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        remaining = deadline - time.monotonic()
        try:
            frame_events = await receive_events(socket, remaining)
        except TimeoutError:
            break
        events.extend(frame_events)
        if [event for event in frame_events if predicate(event)]:
            return events
    raise AssertionError(f"No matching event within {timeout} s; received {summarize(events)}")


async def wait_closed(socket, timeout=WAIT_SECONDS):
    """Read frames until the server closes the socket; return the events of those frames."""
    events = []
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while time.monotonic() < deadline:
            events.extend(await receive_events(socket, deadline - time.monotonic()))
    return events


def is_final_status(event):
    return event["type"] == "status" and event["status"] in FINAL_STATUSES


def is_message(text):
    return lambda event: event["type"] == "message" and event["content"] == text


def is_turn_end_after(text):
    """Match the first final status after the agent message `text`."""
    seen = False

    def predicate(event):
        nonlocal seen
        if is_message(text)(event):
            seen = True
            return False
        return seen and is_final_status(event)

    return predicate


def is_command(text):
    return lambda event: event["type"] == "command" and text in event["content"]


def summarize(events):
    return [(event["id"], event["type"], event["content"][:60]) for event in events]


def ids_of(events):
    return [event["id"] for event in events]


# The database, read from this process

@database_sync_to_async
def stored_events(conversation_id):
    return list(
        Event.objects.filter(conversation_id=conversation_id)
        .order_by("seq")
        .values("seq", "type", "content", "upstream_id", "data")
    )


@database_sync_to_async
def conversation_fields(conversation_id, *fields):
    return Conversation.objects.filter(pk=conversation_id).values(*fields).get()


@database_sync_to_async
def database_connections():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


async def poll(check, timeout=WAIT_SECONDS, interval=0.2):
    """Await `check()` until it returns a true value; return it, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    return None


async def wait_for_relay_owner(conversation_id, servers, timeout=WAIT_SECONDS):
    """Return the server whose process holds the relay lease of the session."""

    async def owner():
        fields = await conversation_fields(conversation_id, "relay_owner")
        return owner_server(fields["relay_owner"], servers)

    server = await poll(owner, timeout)
    assert server is not None, f"No process took the relay lease of {conversation_id}"
    return server


def owner_server(relay_owner, servers):
    # relay_owner is "host:pid:random"; daphne runs in the process that the test started.
    for server in servers:
        if relay_owner.split(":")[1:2] == [str(server.process.pid)]:
            return server
    return None


async def wait_for_status(conversation_id, statuses, timeout=WAIT_SECONDS):
    async def reached():
        status = (await conversation_fields(conversation_id, "status"))["status"]
        return status if status in statuses else None

    status = await poll(reached, timeout)
    assert status is not None, f"Session {conversation_id} never reached {statuses}"
    return status


def relay_connections_logged(server, conversation_id):
    import uuid

    text = server.log_path.read_text(errors="replace")
    return text.count(f"Relay of conversation {uuid.UUID(conversation_id)} connected")


def assert_gap_free(stored):
    assert [event["seq"] for event in stored] == list(range(1, len(stored) + 1))
    upstream_ids = [event["upstream_id"] for event in stored if event["upstream_id"]]
    assert len(upstream_ids) == len(set(upstream_ids))


# 1. Fan-out across processes

async def test_client_sees_other_process_events(cluster, alice):
    key = alice[1]

    for creator in cluster:
        conversation_id = await create_session(creator, key)
        relay_server = await wait_for_relay_owner(conversation_id, cluster)
        watcher_server = next(server for server in cluster if server is not relay_server)
        await wait_for_status(conversation_id, {"idle"})

        async with connect(watcher_server, conversation_id, key) as socket:
            replayed = await receive_events(socket)
            await post_message(creator, key, conversation_id, "RUN echo fan-out-ok")
            live = await receive_until(socket, is_final_status)

        stored = await stored_events(conversation_id)
        received = replayed + live
        assert ids_of(received) == [event["seq"] for event in stored]
        assert_gap_free(stored)
        assert live[0]["id"] == replayed[-1]["id"] + 1
        live_types = [event["type"] for event in live]
        assert "command" in live_types
        assert "command_output" in live_types
        assert "message" in live_types
        outputs = [event["content"] for event in live if event["type"] == "command_output"]
        assert any("fan-out-ok" in output for output in outputs)
        assert live[-1]["status"] == "finished"


# 2. Messages through either process, DELETE through one

async def test_messages_through_either_process(cluster, alice, scripted_llm, embedded_agent_server):
    key = alice[1]
    server_a, server_b = cluster
    conversation_id = await create_session(server_a, key)
    await wait_for_status(conversation_id, {"idle"})

    async with connect(server_a, conversation_id, key) as socket_a, \
            connect(server_b, conversation_id, key) as socket_b:
        await receive_events(socket_a)
        await receive_events(socket_b)

        await socket_a.send(json.dumps("SAY from-socket-a"))
        await receive_until(socket_a, is_message("from-socket-a"))
        await receive_until(socket_b, is_message("from-socket-a"))
        await post_message(server_b, key, conversation_id, "SAY from-rest-b")
        await receive_until(socket_a, is_message("from-rest-b"))
        await receive_until(socket_b, is_message("from-rest-b"))

        status, _, _ = await request(server_a, "DELETE", f"/sessions/{conversation_id}", key)
        final_a = await wait_closed(socket_a)
        final_b = await wait_closed(socket_b)

    assert status == 200
    assert scripted_llm.requests_mentioning("SAY from-socket-a")
    assert scripted_llm.requests_mentioning("SAY from-rest-b")
    assert socket_a.close_code == 1000
    assert socket_b.close_code == 1000
    assert final_a[-1]["status"] == "ended"
    assert final_b[-1]["status"] == "ended"

    # The relay stops and frees its lease, and nothing is stored after the end.
    async def lease_freed():
        return (await conversation_fields(conversation_id, "relay_owner"))["relay_owner"] == ""

    assert await poll(lease_freed, timeout=LEASE_SECONDS * 3)
    await asyncio.sleep(2)
    stored = await stored_events(conversation_id)
    assert stored[-1]["type"] == "status"
    assert stored[-1]["data"]["status"] == "ended"
    assert_gap_free(stored)
    fields = await conversation_fields(conversation_id, "agent_server_url", "upstream_id")
    upstream = httpx.get(
        f"{fields['agent_server_url']}/api/conversations/{fields['upstream_id']}",
        headers={"X-Session-API-Key": embedded_agent_server.api_key},
        timeout=10,
    )
    assert upstream.status_code == 404


# 3. One relay per live session, and takeover when its process dies

async def test_one_relay_per_session(cluster, alice):
    key = alice[1]
    conversation_ids = []
    for index in range(4):
        creator = cluster[index % 2]
        conversation_ids.append(
            await create_session(creator, key, initial_message=f"RUN echo one-relay-{index}")
        )

    for index, conversation_id in enumerate(conversation_ids):
        assert await wait_for_status(conversation_id, FINAL_STATUSES) == "finished"
        owner = (await conversation_fields(conversation_id, "relay_owner"))["relay_owner"]
        assert owner_server(owner, cluster) is not None, owner
        connections = [relay_connections_logged(server, conversation_id) for server in cluster]
        assert sorted(connections) == [0, 1], connections

        stored = await stored_events(conversation_id)
        assert_gap_free(stored)
        types = [event["type"] for event in stored]
        assert types.count("command") == 1
        assert types.count("command_output") == 1
        assert types.count("message") == 1
        output = next(event["content"] for event in stored if event["type"] == "command_output")
        assert f"one-relay-{index}" in output


async def start_long_turn(cluster, key, command):
    """Start `command` in a new session and return (session id, relay server, other server,
    socket on the other server, events received so far), once the agent has run the command."""
    conversation_id = await create_session(cluster[0], key)
    relay_server = await wait_for_relay_owner(conversation_id, cluster)
    survivor = next(server for server in cluster if server is not relay_server)
    await wait_for_status(conversation_id, {"idle"})

    socket = await connect(survivor, conversation_id, key)
    received = await receive_events(socket)
    await post_message(survivor, key, conversation_id, f"RUN {command}")
    received += await receive_until(socket, is_command(command))
    return conversation_id, relay_server, survivor, socket, received


async def assert_turn_complete(conversation_id, received, expected_output):
    stored = await stored_events(conversation_id)
    assert_gap_free(stored)
    assert ids_of(received) == [event["seq"] for event in stored], [
        (event["seq"], event["type"], event["content"][:60]) for event in stored
    ]
    types = [event["type"] for event in stored]
    assert types.count("command") == 1
    assert types.count("command_output") == 1
    assert types.count("message") == 1
    output = next(event["content"] for event in stored if event["type"] == "command_output")
    assert expected_output in output
    assert stored[-1]["type"] == "status"
    assert stored[-1]["data"]["status"] == "finished"


async def test_killed_owner_relay_taken_over(cluster, alice):
    key = alice[1]
    conversation_id, relay_server, survivor, socket, received = await start_long_turn(
        cluster, key, "sleep 4; echo done-after-kill"
    )
    try:
        killed_at = time.monotonic()
        os.kill(relay_server.process.pid, signal.SIGKILL)
        relay_server.process.wait(timeout=10)

        new_owner = await wait_for_relay_owner(conversation_id, [survivor], timeout=LEASE_SECONDS * 3)
        takeover_seconds = time.monotonic() - killed_at
        received += await receive_until(socket, is_final_status)
    finally:
        await socket.close()

    print(f"Relay taken over {takeover_seconds:.1f} s after its process was killed")
    assert new_owner is survivor
    assert takeover_seconds < LEASE_SECONDS * 2
    assert received[-1]["status"] == "finished"
    await assert_turn_complete(conversation_id, received, "done-after-kill")


async def test_frozen_owner_lease_expires(cluster, alice):
    # A stopped process still exists, so only lease expiry can free its conversations, as for a
    # process on another host.
    key = alice[1]
    conversation_id, relay_server, survivor, socket, received = await start_long_turn(
        cluster, key, "sleep 1; echo done-while-frozen"
    )
    try:
        frozen_at = time.monotonic()
        os.kill(relay_server.process.pid, signal.SIGSTOP)
        new_owner = await wait_for_relay_owner(conversation_id, [survivor], timeout=LEASE_SECONDS * 4)
        takeover_seconds = time.monotonic() - frozen_at
        received += await receive_until(socket, is_final_status)

        # The old owner wakes up, finds its lease gone and stops its relay.
        os.kill(relay_server.process.pid, signal.SIGCONT)
        await asyncio.sleep(LEASE_SECONDS)
        owner = (await conversation_fields(conversation_id, "relay_owner"))["relay_owner"]
    finally:
        resume_if_stopped(relay_server)
        await socket.close()

    print(f"Relay taken over {takeover_seconds:.1f} s after its process was stopped")
    assert new_owner is survivor
    # The lease was renewed at most one renewal interval (a third of the lease) before the stop.
    assert takeover_seconds >= LEASE_SECONDS * 2 / 3 - 0.5
    assert takeover_seconds < LEASE_SECONDS * 3
    assert owner_server(owner, cluster) is survivor
    assert received[-1]["status"] == "finished"
    await assert_turn_complete(conversation_id, received, "done-while-frozen")


async def test_gone_upstream_not_reclaimed(cluster, alice, embedded_agent_server):
    key = alice[1]
    conversation_id = await create_session(cluster[0], key)
    relay_server = await wait_for_relay_owner(conversation_id, cluster)
    survivor = next(server for server in cluster if server is not relay_server)
    await wait_for_status(conversation_id, {"idle"})
    fields = await conversation_fields(conversation_id, "agent_server_url", "upstream_id")
    deleted = httpx.delete(
        f"{fields['agent_server_url']}/api/conversations/{fields['upstream_id']}",
        headers={"X-Session-API-Key": embedded_agent_server.api_key},
        timeout=10,
    )

    # The survivor takes the relay over, finds no upstream conversation and gives up once.
    os.kill(relay_server.process.pid, signal.SIGKILL)
    relay_server.process.wait(timeout=10)
    status = await wait_for_status(conversation_id, {"error"}, timeout=LEASE_SECONDS * 3)
    await asyncio.sleep(LEASE_SECONDS * 2)

    assert deleted.status_code == 200
    assert status == "error"
    assert relay_connections_logged(survivor, conversation_id) == 1
    stored = await stored_events(conversation_id)
    assert stored[-1]["type"] == "status"
    assert "has no conversation" in stored[-1]["content"]
    assert_gap_free(stored)


# 4. Placement on the least loaded agent server

async def test_new_sessions_go_least_loaded(cluster, alice, agent_urls, embedded_agent_server):
    key = alice[1]
    first_url, second_url = agent_urls

    placed = []
    for index in range(4):
        conversation_id = await create_session(cluster[index % 2], key)
        placed.append(conversation_id)
    urls = [(await conversation_fields(c, "agent_server_url"))["agent_server_url"] for c in placed]

    status, _, _ = await request(cluster[0], "DELETE", f"/sessions/{placed[0]}", key)
    after_end = await create_session(cluster[1], key)
    after_end_url = (await conversation_fields(after_end, "agent_server_url"))["agent_server_url"]

    # A session stays on its server: its next message runs there.
    await wait_for_status(placed[1], {"idle"})
    await post_message(cluster[0], key, placed[1], "SAY still-on-second")
    assert await wait_for_status(placed[1], FINAL_STATUSES) == "finished"
    upstream_id = (await conversation_fields(placed[1], "upstream_id"))["upstream_id"]
    headers = {"X-Session-API-Key": embedded_agent_server.api_key}
    on_second = httpx.get(f"{second_url}/api/conversations/{upstream_id}", headers=headers, timeout=10)
    on_first = httpx.get(f"{first_url}/api/conversations/{upstream_id}", headers=headers, timeout=10)

    # Ties go to the first listed server.
    assert urls == [first_url, second_url, first_url, second_url]
    assert status == 200
    assert after_end_url == first_url
    assert (await conversation_fields(placed[1], "agent_server_url"))["agent_server_url"] == second_url
    assert on_second.status_code == 200
    assert on_first.status_code == 404
    stored = await stored_events(placed[1])
    assert [event["content"] for event in stored if event["type"] == "message"] == ["still-on-second"]


async def test_placement_skips_down_server(transactional_db, settings, embedded_agent_server):
    from sessions.runtime.agent_server import AgentServerRuntime

    down_url = f"http://127.0.0.1:{free_port()}"
    settings.OPENHANDS_AGENT_SERVER_URL = [down_url, embedded_agent_server.url]
    settings.LLM_MODEL = "openai/scripted"

    picked = await database_sync_to_async(AgentServerRuntime()._pick_external_server)()

    assert picked == embedded_agent_server.url


# 5. Redis restart

async def test_redis_restart_resumes_fanout(cluster, alice, redis_server):
    key = alice[1]
    server_a, server_b = cluster
    conversation_id = await create_session(server_a, key)
    await wait_for_status(conversation_id, {"idle"})

    async with connect(server_a, conversation_id, key) as steady:
        received = await receive_events(steady)
        async with connect(server_b, conversation_id, key) as leaving:
            seen_by_leaving = await receive_events(leaving)
        last_seen = seen_by_leaving[-1]["id"]

        redis_server.stop()
        stopped_at = time.monotonic()
        await post_message(server_b, key, conversation_id, "SAY while-redis-down")
        assert await wait_for_status(conversation_id, FINAL_STATUSES) == "finished"
        # A socket opened during the outage gets the stored events, and joins its group later.
        newcomer = await connect(server_b, conversation_id, key)
        replayed_to_newcomer = await receive_events(newcomer)
        # Long enough for several failed receives, so the sockets' retry delay has grown.
        await asyncio.sleep(max(0, REDIS_OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        redis_server.start()

        try:
            # The socket rejoins its group and catches up from the database on its own.
            received += await receive_until(steady, is_message("while-redis-down"))
            await post_message(server_b, key, conversation_id, "SAY after-redis-restart")
            received += await receive_until(steady, is_turn_end_after("after-redis-restart"))
            seen_by_newcomer = await receive_until(newcomer, is_message("after-redis-restart"))
        finally:
            await newcomer.close()

    async with connect(server_b, conversation_id, key, after=last_seen) as returning:
        caught_up = await receive_until(returning, is_message("after-redis-restart"))

    stored = await stored_events(conversation_id)
    assert_gap_free(stored)
    assert ids_of(received) == [event["seq"] for event in stored][: len(received)]
    assert ids_of(caught_up) == list(range(last_seen + 1, caught_up[-1]["id"] + 1))
    messages = [event["content"] for event in stored if event["type"] == "message"]
    assert messages == ["while-redis-down", "after-redis-restart"]
    assert any(event["content"] == "while-redis-down" for event in caught_up)
    newcomer_events = replayed_to_newcomer + seen_by_newcomer
    assert ids_of(newcomer_events) == list(range(1, newcomer_events[-1]["id"] + 1))
    assert any(event["content"] == "while-redis-down" for event in replayed_to_newcomer)


# 6. Database connections with many sockets

async def test_connections_stay_bounded(cluster, alice):
    key = alice[1]
    socket_count = 50
    conversation_ids = [await create_session(server, key) for server in cluster]
    for conversation_id in conversation_ids:
        await wait_for_status(conversation_id, {"idle"})
    baseline = await database_connections()

    sockets = []
    counts = []
    try:
        for index in range(socket_count):
            server = cluster[index % 2]
            conversation_id = conversation_ids[(index // 2) % 2]
            socket = await connect(server, conversation_id, key)
            sockets.append((socket, conversation_id))
            await receive_events(socket)
        counts.append(await database_connections())

        for index, conversation_id in enumerate(conversation_ids):
            await post_message(cluster[index], key, conversation_id, f"SAY to-all-{index}")
        for socket, conversation_id in sockets:
            index = conversation_ids.index(conversation_id)
            await receive_until(socket, is_message(f"to-all-{index}"))
            counts.append(await database_connections())
    finally:
        for socket, _ in sockets:
            await socket.close()

    print(f"PostgreSQL connections: baseline {baseline}, with {socket_count} sockets {counts}")
    assert len(sockets) == socket_count
    assert max(counts) < socket_count / 2
