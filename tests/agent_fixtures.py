"""Fixtures for tests that run a real agent server with the scripted LLM.

Loaded as a plugin by conftest. The agent server and the scripted LLM are started once per test
session, on 127.0.0.1 only, and stopped at its end.
"""
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

    server = EmbeddedAgentServer(tmp_path_factory.mktemp("agent-data"))
    server.start()
    if not server.wait_ready(READY_TIMEOUT_SECONDS):
        server.stop()
        pytest.fail(f"The agent server was not ready after {READY_TIMEOUT_SECONDS} s: {server.last_error}; see {server.log_path}")
    yield server
    server.stop()


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
