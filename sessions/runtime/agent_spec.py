"""The agent and LLM configuration sent to the agent server, built from Django settings."""
from django.conf import settings

TOOLS = ("terminal", "file_editor", "task_tracker")


def missing_llm_settings():
    """Return the names of required LLM settings that are empty."""
    return [name for name in ("LLM_MODEL",) if not getattr(settings, name, "")]


def llm_config():
    config = {
        "model": settings.LLM_MODEL,
        "num_retries": settings.LLM_NUM_RETRIES,
        "timeout": settings.LLM_TIMEOUT,
        "retry_min_wait": settings.LLM_RETRY_MIN_WAIT,
        "retry_max_wait": settings.LLM_RETRY_MAX_WAIT,
        # Waits grow as multiplier * 2**attempt between the minimum and maximum; the SDK's
        # default multiplier of 8 would make every wait the maximum.
        "retry_multiplier": 2.0,
        "usage_id": "agent",
    }
    if settings.LLM_API_KEY:
        config["api_key"] = settings.LLM_API_KEY
    if settings.LLM_BASE_URL:
        config["base_url"] = settings.LLM_BASE_URL
        # A custom endpoint (a proxy, vLLM, a test server) serves chat completions. With "auto",
        # the SDK may pick the Responses API for model names it does not know.
        config["api_mode"] = "chat"
    return config


def start_conversation_body(conversation_id, working_dir, github_token=""):
    """Return the JSON body of POST /api/conversations for one session."""
    body = {
        "conversation_id": str(conversation_id),
        "agent": {
            "kind": "Agent",
            "llm": llm_config(),
            "tools": [{"name": name} for name in TOOLS],
        },
        "workspace": {"kind": "LocalWorkspace", "working_dir": working_dir},
        # The API sets the title from the first message; an automatic title costs an LLM call.
        "autotitle": False,
    }
    if github_token:
        body["secrets"] = {"GITHUB_TOKEN": {"kind": "StaticSecret", "value": github_token}}
    return body


def describe_llm():
    """Return the LLM settings that error messages may show: never the key."""
    return {
        "model": settings.LLM_MODEL,
        "base_url": settings.LLM_BASE_URL or "the provider's default endpoint",
        "timeout": settings.LLM_TIMEOUT,
    }
