"""A scripted OpenAI-compatible chat-completions server for tests.

The reply is chosen by a directive on the first line of the latest user message (of its last
text part, when the SDK has merged several messages), so one server can serve many tests at once:

    RUN <shell command>   call the `terminal` tool, then `finish` with the command's output
    SAY <text>            respond with plain assistant text
    EDIT <path> <text>    call `file_editor` to create <path> with <text>, then `finish`
    FAIL 500              respond with HTTP 500
    FAIL 404              respond with HTTP 404 "model not found"
    FAIL notjson          respond with HTTP 200 and a body that is not JSON
    FAIL notcompletion    respond with HTTP 200 and JSON that is not a chat completion
    FAIL timeout          wait `timeout_seconds` before responding, longer than the client waits

A message without a directive gets the plain text "OK". Requests without tools (such as
title generation) also get plain text. Every request is kept in `requests` for assertions.
"""
import json
import logging
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/scripted"


class ScriptedLLM:
    """An HTTP server on 127.0.0.1 that returns chat completions chosen by message directives."""

    def __init__(self, timeout_seconds=30.0, port=0):
        # How long `FAIL timeout` waits; tests set the client timeout well below this.
        self.timeout_seconds = timeout_seconds
        # 0 picks a free port at the first start. Later starts bind the same port again.
        self.port = port
        self.requests = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self._stopping = threading.Event()
        # Accepted client sockets, which stop() closes so that kept-alive connections end too.
        self._connections = set()

    @property
    def base_url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self):
        handler = type("Handler", (_Handler,), {"llm": self})
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scripted-llm", daemon=True
        )
        self._thread.start()
        logger.info("Scripted LLM listening on %s", self.base_url)
        return self

    def stop(self):
        """Stop listening and close every open connection, as a server that went down does."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                # Already closed by the client.
                pass
        self._thread.join(timeout=5)

    def track(self, connection, open):
        with self._lock:
            if open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def record(self, path, body):
        with self._lock:
            self.requests.append({"path": path, "body": body})

    def completion_requests(self):
        with self._lock:
            return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def requests_mentioning(self, text):
        """Return the completion requests whose latest user message contains `text`."""
        return [
            r for r in self.completion_requests()
            if text in latest_user_text(r["body"].get("messages", []))
        ]

    def sleep(self, seconds):
        """Wait up to `seconds`, returning early when the server stops."""
        self._stopping.wait(seconds)


def message_text(message):
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict)
        )
    return ""


def latest_user_text(messages):
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def latest_directive(messages):
    """Return the last text part of the latest user message.

    The SDK merges consecutive user messages into one with several parts (for example a retry
    after an error), and the newest part carries the directive to follow.
    """
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("text")]
            return texts[-1] if texts else ""
        return content or ""
    return ""


def messages_after_latest_user(messages):
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return messages[index + 1:]
    return list(messages)


def plan_reply(body):
    """Return ("text", str), ("tool", name, arguments) or ("fail", kind) for a request."""
    messages = body.get("messages", [])
    text = latest_directive(messages).strip()
    first_line = text.splitlines()[0] if text else ""
    verb, _, rest = first_line.partition(" ")

    if verb == "FAIL":
        return ("fail", rest.strip())

    # Title generation and other helper calls send no tools, so they get plain text.
    if not body.get("tools"):
        return ("text", "Scripted title")

    tool_results = [m for m in messages_after_latest_user(messages) if m.get("role") == "tool"]

    if verb == "RUN":
        if not tool_results:
            return ("tool", "terminal", {"command": rest})
        output = message_text(tool_results[-1])
        return ("tool", "finish", {"message": f"Command output:\n{output}"})

    if verb == "EDIT":
        path, _, file_text = rest.partition(" ")
        if not tool_results:
            return ("tool", "file_editor", {"command": "create", "path": path, "file_text": file_text})
        return ("tool", "finish", {"message": f"Created {path}"})

    if verb == "SAY":
        return ("text", rest)

    return ("text", "OK")


def completion_body(model, plan):
    message = {"role": "assistant", "content": None}
    finish_reason = "stop"
    if plan[0] == "text":
        message["content"] = plan[1]
    else:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": plan[1], "arguments": json.dumps(plan[2])},
            }
        ]
        finish_reason = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    }


def stream_chunks(completion):
    """Split a completion into the chunks of an OpenAI streaming response."""
    choice = completion["choices"][0]
    delta = {"role": "assistant"}
    if choice["message"].get("content") is not None:
        delta["content"] = choice["message"]["content"]
    if choice["message"].get("tool_calls"):
        delta["tool_calls"] = [
            {"index": i, **call} for i, call in enumerate(choice["message"]["tool_calls"])
        ]
    base = {key: completion[key] for key in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {
        **base,
        "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
        "usage": completion["usage"],
    }


class _Handler(BaseHTTPRequestHandler):
    llm: ScriptedLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        logger.debug("Scripted LLM: " + format, *args)

    def setup(self):
        super().setup()
        self.llm.track(self.connection, open=True)

    def finish(self):
        self.llm.track(self.connection, open=False)
        super().finish()

    def do_GET(self):
        self.llm.record(self.path, None)
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(200, {"object": "list", "data": [{"id": DEFAULT_MODEL, "object": "model"}]})
            return
        self.send_json(404, {"error": {"message": f"Unknown path {self.path}", "type": "not_found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        self.llm.record(self.path, body)

        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": f"Unknown path {self.path}", "type": "not_found"}})
            return

        plan = plan_reply(body)
        if plan[0] == "fail":
            self.send_failure(plan[1], body.get("model", DEFAULT_MODEL))
            return

        completion = completion_body(body.get("model", DEFAULT_MODEL), plan)
        if body.get("stream"):
            self.send_stream(completion)
        else:
            self.send_json(200, completion)

    def send_failure(self, kind, model):
        if kind == "500":
            self.send_json(500, {"error": {"message": "Scripted server error", "type": "server_error"}})
        elif kind == "404":
            self.send_json(404, {
                "error": {
                    "message": f"The model `{model}` does not exist",
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                }
            })
        elif kind == "notjson":
            self.send_raw(200, b"this is not JSON", "text/plain")
        elif kind == "notcompletion":
            self.send_json(200, {"hello": "world"})
        elif kind == "timeout":
            self.llm.sleep(self.llm.timeout_seconds)
            self.send_json(500, {"error": {"message": "Scripted timeout elapsed", "type": "server_error"}})
        else:
            self.send_json(400, {"error": {"message": f"Unknown FAIL kind {kind!r}", "type": "invalid_request_error"}})

    def send_json(self, status, payload):
        self.send_raw(status, json.dumps(payload).encode(), "application/json")

    def send_raw(self, status, data, content_type):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout or interrupt), so no client is waiting for the response.
            pass

    def send_stream(self, completion):
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in stream_chunks(completion):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
