"""Settings of the agent runtime: which agent server runs the agents, and which LLM they use."""
from openhands_api import config

# "agent-server" runs real agents; "disabled" stores messages without running any agent, for
# tests of the REST and WebSocket layers that need no LLM.
AGENT_RUNTIME = config.env_str("OPENHANDS_API_AGENT_RUNTIME", "agent-server")
if AGENT_RUNTIME not in {"agent-server", "disabled"}:
    raise config.ImproperlyConfigured(
        f"OPENHANDS_API_AGENT_RUNTIME must be 'agent-server' or 'disabled', got {AGENT_RUNTIME!r}."
    )

# Empty: launch and supervise one local agent server. Otherwise the external servers to use.
OPENHANDS_AGENT_SERVER_URL = config.env_url_list("OPENHANDS_AGENT_SERVER_URL", ("http", "https"))
OPENHANDS_AGENT_SERVER_API_KEY = config.env_str("OPENHANDS_AGENT_SERVER_API_KEY")

LLM_MODEL = config.env_str("LLM_MODEL")
LLM_API_KEY = config.env_str("LLM_API_KEY")
LLM_BASE_URL = config.env_url("LLM_BASE_URL", ("http", "https"))
# Interactive defaults: the SDK's own (5 retries from 8 to 64 s) hide a dead endpoint for
# about two minutes.
LLM_NUM_RETRIES = config.env_int("LLM_NUM_RETRIES", 1, minimum=0, maximum=20)
LLM_TIMEOUT = config.env_int("LLM_TIMEOUT", 120, minimum=1)
LLM_RETRY_MIN_WAIT = config.env_int("LLM_RETRY_MIN_WAIT", 1, minimum=0)
LLM_RETRY_MAX_WAIT = config.env_int("LLM_RETRY_MAX_WAIT", 4, minimum=0)

GIT_BASE_URL = config.env_url("GIT_BASE_URL", ("http", "https", "file"), "https://github.com")

# Seconds a relay lease lasts without renewal. Another process takes over a dead owner's
# conversations after at most this long; the owner renews every third of it.
RELAY_LEASE_SECONDS = config.env_int("OPENHANDS_API_RELAY_LEASE_SECONDS", 15, minimum=3)

# Agent server executable for the embedded server (default: agent-server beside Python).
OPENHANDS_AGENT_SERVER_EXECUTABLE = config.env_str("OPENHANDS_AGENT_SERVER_EXECUTABLE") or None
# Root of the workspaces on external agent servers, on their hosts.
OPENHANDS_AGENT_SERVER_WORKSPACE_ROOT = config.env_str(
    "OPENHANDS_AGENT_SERVER_WORKSPACE_ROOT", "/workspace/openhands-api"
)
