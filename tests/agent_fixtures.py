"""Fixtures for tests that run a real agent server with the scripted LLM.

Loaded as a plugin by conftest. The agent server and the scripted LLM are started once per test
session, on 127.0.0.1 only, and stopped at its end. The daphne process with a real agent runtime,
its scripted LLM and the git server are started once per module that uses them.
"""
import json
import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.scripted_llm import ScriptedLLM

# Client-side LLM limits for agent tests: failures must surface in seconds.
LLM_TEST_TIMEOUT_SECONDS = 3
# How long `FAIL timeout` keeps the request open: longer than the client waits.
SCRIPTED_TIMEOUT_SECONDS = 10
READY_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="session")
def scripted_llm():
    server = ScriptedLLM(timeout_seconds=SCRIPTED_TIMEOUT_SECONDS).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded_agent_server(tmp_path_factory):
    """A supervised agent server subprocess with its own data dir."""
    from sessions.runtime.supervisor import EmbeddedAgentServer

    server = start_agent_server(EmbeddedAgentServer(tmp_path_factory.mktemp("agent-data")))
    yield server
    server.stop()


def start_agent_server(server):
    """Start a supervised agent server and wait until it is ready, or fail the test."""
    server.start()
    if not server.wait_ready(READY_TIMEOUT_SECONDS):
        server.stop()
        pytest.fail(
            f"The agent server was not ready after {READY_TIMEOUT_SECONDS} s: "
            f"{server.last_error}; see {server.log_path}"
        )
    return server


@pytest.fixture
def llm_settings(settings, scripted_llm):
    """Point the LLM settings at the scripted LLM with short timeouts and no retries."""
    settings.LLM_MODEL = "openai/scripted"
    settings.LLM_API_KEY = "scripted-test-key"
    settings.LLM_BASE_URL = scripted_llm.base_url
    settings.LLM_TIMEOUT = LLM_TEST_TIMEOUT_SECONDS
    settings.LLM_NUM_RETRIES = 0
    settings.LLM_RETRY_MIN_WAIT = 0
    settings.LLM_RETRY_MAX_WAIT = 1
    return settings


# A daphne process whose runtime runs real agents on its own embedded agent server.

# Secrets in the environment of the module's daphne process, which its agents must not see.
DAPHNE_SECRET_KEY = "e2e-secret-key-" + secrets.token_hex(16)
DAPHNE_LLM_API_KEY = "e2e-llm-key-" + secrets.token_hex(16)


def agent_runtime_environment(llm, data_dir):
    """Return the environment of a daphne process that runs agents against `llm`."""
    return {
        "OPENHANDS_API_AGENT_RUNTIME": "agent-server",
        "OPENHANDS_API_DATA_DIR": str(data_dir),
        "LLM_MODEL": "openai/scripted",
        "LLM_API_KEY": DAPHNE_LLM_API_KEY,
        "LLM_BASE_URL": llm.base_url,
        "LLM_TIMEOUT": str(LLM_TEST_TIMEOUT_SECONDS),
        "LLM_NUM_RETRIES": "0",
        "LLM_RETRY_MIN_WAIT": "0",
        "LLM_RETRY_MAX_WAIT": "1",
        "SECRET_KEY": DAPHNE_SECRET_KEY,
    }


def embedded_server_state(data_dir):
    """Return the supervisor's record of the embedded agent server under `data_dir`, or None.

    The record has `url`, `pid` (the agent server) and `owner_pid` (its supervisor), plus
    `api_key` read from the key file.
    """
    state_dir = Path(data_dir) / "agent-server"
    try:
        state = json.loads((state_dir / "server.json").read_text())
        state["api_key"] = (state_dir / "session_api_key").read_text().strip()
    except (OSError, ValueError):
        return None
    return state


def wait_for_embedded_server(data_dir, timeout=READY_TIMEOUT_SECONDS, replacing_pid=None):
    """Wait until the embedded agent server under `data_dir` is ready, and return its record.

    With `replacing_pid`, wait for a server other than that process.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = embedded_server_state(data_dir)
        if state is not None and state["pid"] != replacing_pid:
            try:
                if httpx.get(f"{state['url']}/ready", timeout=2).status_code == 200:
                    return state
            except httpx.HTTPError:
                pass
        time.sleep(0.25)
    raise AssertionError(f"The embedded agent server under {data_dir} was not ready after {timeout} s")


@pytest.fixture(scope="module")
def daphne_llm():
    """A scripted LLM of the module's own, so that a test may stop it and start it again."""
    server = ScriptedLLM(timeout_seconds=SCRIPTED_TIMEOUT_SECONDS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def git_http_server(tmp_path_factory):
    """A git smart-HTTP server on 127.0.0.1 that requires a GitHub-style token."""
    from tests.git_http import GitHttpServer

    root = tmp_path_factory.mktemp("git") / "repositories"
    server = GitHttpServer(root, token="ghp_" + secrets.token_hex(18)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent_daphne_process(django_db_setup, tmp_path_factory, daphne_llm, git_http_server):
    """A daphne process with the agent-server runtime and a data dir of its own.

    It launches and supervises its own agent server, clones from `git_http_server`, and
    shares the test database. It starts once per module, because its agent server takes seconds
    to start.
    """
    from tests.servers import DaphneServer

    data_dir = tmp_path_factory.mktemp("agent-daphne")
    environment = agent_runtime_environment(daphne_llm, data_dir)
    environment["GIT_BASE_URL"] = git_http_server.base_url
    server = DaphneServer(extra_env=environment, log_path=data_dir / "daphne.log")
    server.data_dir = data_dir
    server.start()
    try:
        wait_for_embedded_server(data_dir)
    except AssertionError:
        server.stop()
        raise
    yield server
    server.stop()
    stop_leftover_tmux_servers(data_dir)


@pytest.fixture
def agent_daphne(agent_daphne_process, transactional_db):
    """The module's agent daphne process; the sessions a test leaves live are ended after it."""
    if agent_daphne_process.process.poll() is not None:
        pytest.fail(f"The agent daphne process has exited: {agent_daphne_process.log_tail()}")
    yield agent_daphne_process
    end_live_sessions(agent_daphne_process)


@pytest.fixture
def agent_daphne_stopped(agent_daphne_process):
    """Stop the module's agent daphne process during one test, then start it again.

    Processes that share the database take over the relays of a dead process's sessions. One
    with another data dir, and so another embedded agent server, would find no such
    conversation there and mark the session failed, so tests that start daphne processes of
    their own stop this one first.
    """
    stopped_server = embedded_server_state(agent_daphne_process.data_dir)
    agent_daphne_process.stop()
    yield
    agent_daphne_process.start()
    wait_for_embedded_server(agent_daphne_process.data_dir, replacing_pid=stopped_server["pid"])


def end_live_sessions(server):
    """End every live session through `server`, so that no agent keeps running after a test."""
    from sessions.models import ApiKey, Conversation, Status

    for conversation in Conversation.objects.exclude(status=Status.ENDED).select_related("owner"):
        _, key = ApiKey.objects.create_key(user=conversation.owner, name="cleanup key")
        server.request("DELETE", f"/sessions/{conversation.id.hex}", key)


def stop_leftover_tmux_servers(data_dir):
    """Stop the tmux servers that agent servers under `data_dir` left, and return their pids.

    Agent server terminals run in tmux servers, which daemonize and so outlive an agent server
    that was killed. They are recognized by HOME, which the supervisor sets under the data dir.
    """
    home = f"HOME={Path(data_dir).resolve() / 'agent-server' / 'home'}".encode()
    stopped = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("tmux"):
                continue
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if home not in environment:
            continue
        try:
            os.kill(int(entry.name), signal.SIGTERM)
        except ProcessLookupError:
            continue
        stopped.append(int(entry.name))
    return stopped
