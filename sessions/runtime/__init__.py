"""The agent runtime: what runs an agent behind each session.

`get_runtime()` returns the runtime that the OPENHANDS_API_AGENT_RUNTIME setting selects. Its
methods are synchronous and called from request threads by `sessions.services`.
"""
import functools

from django.conf import settings
from django.utils.module_loading import import_string

RUNTIMES = {
    "agent-server": "sessions.runtime.agent_server.AgentServerRuntime",
    "disabled": "sessions.runtime.disabled.DisabledRuntime",
}


class RuntimeUnavailable(Exception):
    """No agent can be started now; the message states what the operator should do."""


@functools.cache
def get_runtime():
    return import_string(RUNTIMES[settings.AGENT_RUNTIME])()
