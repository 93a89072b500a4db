"""The scripted LLM responds to each directive as documented, over real HTTP."""
import json

import httpx
import pytest

from tests.scripted_llm import ScriptedLLM

TOOLS = [{"type": "function", "function": {"name": "terminal", "parameters": {}}}]


@pytest.fixture
def llm():
    server = ScriptedLLM(timeout_seconds=2).start()
    yield server
    server.stop()


def chat(llm, messages, tools=TOOLS, stream=False, timeout=5):
    body = {"model": "scripted", "messages": messages, "tools": tools, "stream": stream}
    return httpx.post(f"{llm.base_url}/chat/completions", json=body, timeout=timeout)


def user(text):
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def test_run_calls_terminal(llm):
    response = chat(llm, [user("RUN echo hi")])

    assert response.status_code == 200
    call = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "terminal"
    assert json.loads(call["arguments"]) == {"command": "echo hi"}


def test_run_finishes_with_tool_output(llm):
    messages = [
        user("RUN echo hi"),
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "terminal", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "hi"},
    ]
    response = chat(llm, messages)

    call = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "finish"
    assert "hi" in json.loads(call["arguments"])["message"]


def test_say_returns_text(llm):
    response = chat(llm, [user("SAY hello there")])

    message = response.json()["choices"][0]["message"]
    assert message["content"] == "hello there"
    assert "tool_calls" not in message


def test_edit_calls_file_editor(llm):
    response = chat(llm, [user("EDIT /tmp/x.txt some text")])

    call = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "file_editor"
    assert json.loads(call["arguments"]) == {"command": "create", "path": "/tmp/x.txt", "file_text": "some text"}


def test_latest_user_message_wins(llm):
    response = chat(llm, [user("RUN echo old"), {"role": "assistant", "content": "done"}, user("SAY new")])

    assert response.json()["choices"][0]["message"]["content"] == "new"


def test_request_without_tools_gets_text(llm):
    response = chat(llm, [user("RUN echo hi")], tools=None)

    assert response.json()["choices"][0]["message"]["content"] == "Scripted title"


@pytest.mark.parametrize(
    ("kind", "status"),
    [("500", 500), ("404", 404), ("notjson", 200), ("notcompletion", 200)],
)
def test_fail_directives(llm, kind, status):
    response = chat(llm, [user(f"FAIL {kind}")])

    assert response.status_code == status
    if kind == "notjson":
        with pytest.raises(ValueError):
            response.json()
    if kind == "notcompletion":
        assert "choices" not in response.json()


def test_fail_timeout_outlasts_client(llm):
    with pytest.raises(httpx.ReadTimeout):
        chat(llm, [user("FAIL timeout")], timeout=0.5)


def test_streaming_answer(llm):
    response = chat(llm, [user("SAY streamed")], stream=True)

    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["choices"][0]["delta"]["content"] == "streamed"


def test_requests_are_recorded(llm):
    chat(llm, [user("SAY recorded")])

    assert len(llm.requests_mentioning("SAY recorded")) == 1
    assert llm.completion_requests()[0]["body"]["model"] == "scripted"
