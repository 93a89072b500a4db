"""Human-actionable messages for the errors that end an agent's run."""

# Substrings of LiteLLM's detail text, as raised by openhands-sdk 1.58.2 through LiteLLM.
CONNECTION_MARKERS = ("Connection error", "Connection refused", "Name or service not known")


def describe_conversation_error(code, detail, llm):
    """Return a message naming the cause of a ConversationErrorEvent and what to do about it.

    `llm` contains `model`, `base_url` and `timeout` as shown to users; `detail` is the upstream
    text, which the message keeps at its end for diagnosis.
    """
    endpoint = llm.get("base_url") or "the LLM endpoint"
    model = llm.get("model") or "the model"

    if code == "LLMServiceUnavailableError" and any(m in detail for m in CONNECTION_MARKERS):
        message = (
            f"The LLM endpoint {endpoint} could not be reached. Check that it is running and "
            f"that LLM_BASE_URL is correct, then send a message to retry."
        )
    elif code == "LLMServiceUnavailableError":
        message = (
            f"The LLM endpoint {endpoint} failed or sent an invalid answer. Check its logs, "
            f"then send a message to retry."
        )
    elif code == "LLMTimeoutError":
        message = (
            f"The LLM endpoint {endpoint} did not answer within {llm.get('timeout')} seconds. "
            f"Raise LLM_TIMEOUT or check the endpoint, then send a message to retry."
        )
    elif code == "NotFoundError":
        message = (
            f"The LLM endpoint {endpoint} does not know the model {model!r}. "
            f"Check LLM_MODEL (LiteLLM names have a provider prefix, such as openai/gpt-4o)."
        )
    elif code in ("AuthenticationError", "LLMAuthenticationError", "PermissionDeniedError"):
        message = f"The LLM endpoint {endpoint} rejected the credentials. Check LLM_API_KEY."
    elif code in ("LLMBadRequestError", "BadRequestError"):
        message = (
            f"The LLM endpoint {endpoint} rejected the request for model {model!r}. "
            f"Check LLM_MODEL and LLM_BASE_URL."
        )
    elif code in ("RateLimitError", "LLMRateLimitError"):
        message = f"The LLM endpoint {endpoint} is rate-limiting requests. Wait, then retry."
    else:
        message = "The agent stopped with an error."
    return f"{message} ({code}: {detail})" if detail else f"{message} ({code})"
