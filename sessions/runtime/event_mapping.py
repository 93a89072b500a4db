"""Translate agent server events into the API's event catalogue.

Catalogue types: `message` (the agent's words, including its finish message), `thought`,
`command`, `command_output`, `file_edit`, `status` and `error`. Events that clients do not need
(system prompt, the user's own messages, token streams, condensation, state snapshots and
statistics) map to nothing.
"""
import datetime
import logging
from dataclasses import dataclass, field

from sessions.runtime.error_messages import describe_conversation_error

logger = logging.getLogger(__name__)

# Status event texts for clients, by upstream `execution_status`. Each of these values is also
# a session status of the API.
STATUS_DESCRIPTIONS = {
    "idle": "The agent is waiting for a message.",
    "running": "The agent is working.",
    "paused": "The agent is paused.",
    "waiting_for_confirmation": "The agent is waiting for confirmation of an action.",
    "finished": "The agent finished its task.",
    "error": "The agent stopped with an error.",
    "stuck": "The agent stopped because it was repeating itself.",
}

EXECUTION_STATUSES = frozenset(STATUS_DESCRIPTIONS)

# file_editor commands that change a file; `view` only reads.
EDIT_COMMANDS = frozenset({"create", "str_replace", "insert", "undo_edit"})

SUMMARY_LENGTH = 200


@dataclass
class MappedEvent:
    type: str
    source: str
    content: str
    upstream_id: str
    payload: dict
    timestamp: datetime.datetime | None
    data: dict = field(default_factory=dict)

    def record_kwargs(self):
        """Return the keyword arguments of `sessions.events.record_event` for this event."""
        return {
            "type": self.type,
            "source": self.source,
            "content": self.content,
            "data": self.data,
            "upstream_id": self.upstream_id,
            "payload": self.payload,
            "timestamp": self.timestamp,
        }


def parse_upstream_timestamp(value):
    """Return an aware UTC datetime for an upstream timestamp, or None if it cannot be parsed.

    The agent server writes naive timestamps in its own local time. The embedded server runs
    with TZ=UTC, so a naive value is read as UTC.
    """
    # NOTE: timestamps of an external agent server whose local time zone is not UTC come out
    # shifted by its UTC offset. The order of events is unaffected.
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def text_of(content):
    """Join the text parts of an upstream content list (or return a plain string)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        part.get("text", "") for part in content
        if isinstance(part, dict) and part.get("type", "text") == "text"
    )


def shorten(text, length=SUMMARY_LENGTH):
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def map_event(upstream, llm=None):
    """Return the MappedEvents (zero or more) for one upstream event dict.

    `llm` is the dict of `agent_spec.describe_llm()`, used to name the endpoint in LLM errors.
    """
    kind = upstream.get("kind")
    upstream_id = upstream.get("id")
    if not kind or not upstream_id:
        # The first frame of a socket is the full state without a kind; the relay reads it.
        return []

    builder = _BUILDERS.get(kind)
    if builder is None:
        return []

    def make(type, content, source=None, data=None, suffix=""):
        return MappedEvent(
            type=type,
            source=source or upstream.get("source") or "environment",
            content=content,
            data=data or {},
            upstream_id=upstream_id + suffix,
            payload=upstream,
            timestamp=parse_upstream_timestamp(upstream.get("timestamp")),
        )

    return builder(upstream, make, llm or {})


def _message(upstream, make, llm):
    # The API stores the user's messages itself when it receives them.
    if upstream.get("source") != "agent":
        return []
    message = upstream.get("llm_message") or {}
    text = text_of(message.get("content"))
    events = []
    reasoning = message.get("reasoning_content")
    if reasoning:
        events.append(make("thought", reasoning, suffix=":thought"))
    if text:
        events.append(make("message", text))
    return events


def _action(upstream, make, llm):
    action = upstream.get("action") or {}
    tool = upstream.get("tool_name") or ""
    events = []

    # Text the model wrote beside its tool call is its reasoning for the call.
    thought = text_of(upstream.get("thought")) or upstream.get("reasoning_content") or ""
    if thought and tool != "think":
        events.append(make("thought", thought, suffix=":thought"))

    if tool == "finish":
        events.append(make("message", action.get("message", "")))
    elif tool == "think":
        events.append(make("thought", action.get("thought", "") or thought))
    elif tool == "terminal":
        events.append(make("command", action.get("command", ""), data={"tool": tool}))
    elif tool == "file_editor" and action.get("command") in EDIT_COMMANDS:
        path = action.get("path", "")
        command = action.get("command")
        events.append(make(
            "file_edit",
            f"{command} {path}",
            data={"path": path, "command": command, "summary": _edit_summary(action)},
        ))
    else:
        # Other tools (file views, the task tracker) appear as commands named after the tool.
        summary = upstream.get("summary") or tool
        events.append(make("command", summary, data={"tool": tool}))
    return events


def _edit_summary(action):
    command = action.get("command")
    if command == "create":
        text = action.get("file_text") or ""
        return f"created with {len(text.splitlines())} lines"
    if command == "str_replace":
        return shorten(f"replaced {action.get('old_str') or ''!r} with {action.get('new_str') or ''!r}")
    if command == "insert":
        return f"inserted text after line {action.get('insert_line')}"
    return "undid the last edit"


def _observation(upstream, make, llm):
    tool = upstream.get("tool_name") or ""
    observation = upstream.get("observation") or {}
    text = text_of(observation.get("content"))
    is_error = bool(observation.get("is_error"))

    # The finish and think tools echo their action, which is already mapped.
    if tool in ("finish", "think"):
        return []
    # A successful edit is reported by its file_edit event; only failures add output.
    if tool == "file_editor" and not is_error and observation.get("command") in EDIT_COMMANDS:
        return []

    data = {"tool": tool, "is_error": is_error}
    if tool == "terminal":
        data["exit_code"] = observation.get("exit_code")
        data["command"] = observation.get("command")
    return [make("command_output", text, data=data)]


def _user_reject(upstream, make, llm):
    reason = upstream.get("rejection_reason") or "The action was rejected."
    return [make("command_output", reason, data={"tool": upstream.get("tool_name"), "rejected": True})]


def _agent_error(upstream, make, llm):
    tool = upstream.get("tool_name") or "the agent"
    text = f"The tool {tool} failed: {upstream.get('error', '')}"
    return [make("error", text, data={"code": "AgentError", "tool": tool})]


def _conversation_error(upstream, make, llm):
    code = upstream.get("code") or "Error"
    text = describe_conversation_error(code, upstream.get("detail") or "", llm)
    return [make("error", text, data={"code": code}, source="environment")]


def _state_update(upstream, make, llm):
    if upstream.get("key") != "execution_status":
        return []
    status = upstream.get("value")
    if status not in EXECUTION_STATUSES:
        logger.warning("Ignoring unknown execution status %r in event %s", status, upstream.get("id"))
        return []
    return [make("status", STATUS_DESCRIPTIONS[status], data={"status": status}, source="environment")]


_BUILDERS = {
    "MessageEvent": _message,
    "ActionEvent": _action,
    "ObservationEvent": _observation,
    "UserRejectObservation": _user_reject,
    "AgentErrorEvent": _agent_error,
    "ConversationErrorEvent": _conversation_error,
    "ServerErrorEvent": _conversation_error,
    "ConversationStateUpdateEvent": _state_update,
}
