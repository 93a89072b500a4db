"""POST /sessions: create a session."""
import re

import pytest
from django.conf import settings

from sessions.models import Conversation, Event
from sessions.runtime import RuntimeUnavailable, get_runtime
from tests.helpers import assert_error, assert_validation_error, create_session

GITHUB_TOKEN = "ghp_createTestToken1234567890abcdef"


def raise_unavailable(*args, **kwargs):
    raise RuntimeUnavailable("No agent server is ready: start one and retry.")


def event_rows(session_id):
    return list(Event.objects.filter(conversation_id=session_id).order_by("seq"))


@pytest.mark.django_db
def test_create_returns_id(alice_client):
    response = alice_client.post("/sessions", {"initial_message": "Hi"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body.keys() == {"conversation_id", "status"}
    assert body["status"] == "ok"
    assert re.fullmatch(r"[0-9a-f]{32}", body["conversation_id"])


@pytest.mark.django_db
def test_create_sets_location(alice_client):
    response = alice_client.post("/sessions", {}, format="json")

    session_id = response.json()["conversation_id"]
    assert response["Location"] == f"/sessions/{session_id}"


@pytest.mark.django_db
def test_location_serves_detail(alice_client):
    response = alice_client.post("/sessions", {}, format="json")

    detail = alice_client.get(response["Location"])

    assert detail.status_code == 200
    assert detail.json()["conversation_id"] == response.json()["conversation_id"]


@pytest.mark.django_db
def test_create_with_trailing_slash(alice_client):
    response = alice_client.post("/sessions/", {}, format="json")

    assert response.status_code == 201


@pytest.mark.django_db
def test_create_without_body(alice_client):
    response = alice_client.post("/sessions")

    assert response.status_code == 201


@pytest.mark.django_db
def test_create_owned_by_caller(alice, alice_client):
    session_id = create_session(alice_client)

    assert Conversation.objects.get(pk=session_id).owner == alice[0]


@pytest.mark.django_db
def test_create_stores_status_event(alice_client):
    session_id = create_session(alice_client)

    events = event_rows(session_id)
    assert len(events) == 1
    assert events[0].seq == 1
    assert events[0].type == "status"
    assert events[0].data == {"status": "starting"}
    assert events[0].source == "environment"


@pytest.mark.django_db
def test_create_stores_initial_message(alice_client):
    session_id = create_session(alice_client, initial_message="Fix the build")

    events = event_rows(session_id)
    assert [event.seq for event in events] == [1, 2]
    assert events[0].type == "status"
    assert events[1].type == "user_message"
    assert events[1].source == "user"
    assert events[1].content == "Fix the build"


@pytest.mark.django_db
def test_create_titles_from_message(alice_client):
    session_id = create_session(alice_client, initial_message="First line\nSecond line")

    assert Conversation.objects.get(pk=session_id).title == "First line"


@pytest.mark.django_db
def test_create_shortens_long_title(alice_client):
    session_id = create_session(alice_client, initial_message="x" * 200)

    title = Conversation.objects.get(pk=session_id).title
    assert len(title) == 80
    assert title.endswith("…")


@pytest.mark.django_db
def test_create_stores_repository(alice_client):
    session_id = create_session(alice_client, selected_repository="octocat/hello-world")

    assert Conversation.objects.get(pk=session_id).selected_repository == "octocat/hello-world"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "repository",
    [
        "a/b",
        "octocat/hello-world",
        "Octo-Cat-1/repo.name_x",
        "o" * 39 + "/repo",
        "octocat/" + "r" * 100,
        "octocat/.github",
        "octocat/...",
        "octocat/-_-",
    ],
)
def test_valid_repository_accepted(alice_client, repository):
    response = alice_client.post("/sessions", {"selected_repository": repository}, format="json")

    assert response.status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    "repository",
    [
        "octocat",
        "octocat/",
        "/hello-world",
        "octocat/hello/world",
        "-octocat/repo",
        "octocat-/repo",
        "octo--cat/repo",
        "octo_cat/repo",
        "o" * 40 + "/repo",
        "octocat/" + "r" * 101,
        "octocat/.",
        "octocat/..",
        "octocat/hello world",
        "octocat/hello\nworld",
        "octocat/héllo",
        "https://github.com/octocat/hello-world",
    ],
)
def test_invalid_repository_rejected(alice_client, repository):
    response = alice_client.post("/sessions", {"selected_repository": repository}, format="json")

    body = assert_validation_error(response, "selected_repository")
    assert "owner/name" in body["errors"]["selected_repository"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["github_token", "selected_repository", "initial_message"])
def test_null_field_accepted(alice_client, field):
    response = alice_client.post("/sessions", {field: None}, format="json")

    assert response.status_code == 201


@pytest.mark.django_db
def test_github_token_not_returned(alice_client):
    response = alice_client.post(
        "/sessions", {"github_token": GITHUB_TOKEN, "initial_message": "Hi"}, format="json"
    )
    session_id = response.json()["conversation_id"]

    assert GITHUB_TOKEN.encode() not in response.content
    for path in ["/sessions", f"/sessions/{session_id}", f"/sessions/{session_id}/events"]:
        assert GITHUB_TOKEN.encode() not in alice_client.get(path).content


@pytest.mark.django_db
def test_github_token_not_stored(alice_client):
    session_id = create_session(alice_client, github_token=GITHUB_TOKEN, initial_message="Hi")

    conversation = Conversation.objects.get(pk=session_id)
    assert conversation.has_github_token is True
    row = Conversation.objects.filter(pk=session_id).values().get()
    assert not any(GITHUB_TOKEN in str(value) for value in row.values())
    for event in Event.objects.filter(conversation_id=session_id):
        assert GITHUB_TOKEN not in event.content
        assert GITHUB_TOKEN not in str(event.data)
        assert GITHUB_TOKEN not in str(event.payload)


@pytest.mark.django_db
@pytest.mark.parametrize("token", [None, ""])
def test_no_github_token_recorded(alice_client, token):
    session_id = create_session(alice_client, github_token=token)

    assert Conversation.objects.get(pk=session_id).has_github_token is False


@pytest.mark.django_db
def test_github_token_with_space_rejected(alice_client):
    response = alice_client.post("/sessions", {"github_token": "ghp_a b"}, format="json")

    assert_validation_error(response, "github_token")


@pytest.mark.django_db
def test_github_token_too_long_rejected(alice_client):
    response = alice_client.post("/sessions", {"github_token": "g" * 1001}, format="json")

    assert_validation_error(response, "github_token")


@pytest.mark.django_db
def test_rejected_token_not_echoed(alice_client):
    token = "ghp_" + "s" * 1000

    response = alice_client.post("/sessions", {"github_token": token}, format="json")

    assert_error(response, 400)
    assert token.encode() not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("message", ["", " ", "\n\t "])
def test_blank_initial_message_rejected(alice_client, message):
    response = alice_client.post("/sessions", {"initial_message": message}, format="json")

    assert_validation_error(response, "initial_message")


@pytest.mark.django_db
def test_longest_initial_message_accepted(alice_client):
    message = "m" * settings.MAX_MESSAGE_CHARS

    session_id = create_session(alice_client, initial_message=message)

    assert event_rows(session_id)[1].content == message


@pytest.mark.django_db
def test_too_long_initial_message_rejected(alice_client):
    message = "m" * (settings.MAX_MESSAGE_CHARS + 1)

    response = alice_client.post("/sessions", {"initial_message": message}, format="json")

    assert_validation_error(response, "initial_message")


@pytest.mark.django_db
def test_unknown_field_rejected(alice_client):
    response = alice_client.post("/sessions", {"initial_mesage": "typo"}, format="json")

    body = assert_validation_error(response, "initial_mesage")
    assert "initial_message" in body["errors"]["initial_mesage"][0]


@pytest.mark.django_db
def test_unknown_and_invalid_fields_reported(alice_client):
    body = {"model": "gpt", "selected_repository": "not a repository"}

    response = alice_client.post("/sessions", body, format="json")

    errors = assert_error(response, 400)["errors"]
    assert "model" in errors
    assert "selected_repository" in errors


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["github_token", "selected_repository", "initial_message"])
@pytest.mark.parametrize("value", [42, 1.5, True, False, ["text"], {"text": "x"}])
def test_non_string_field_rejected(alice_client, field, value):
    response = alice_client.post("/sessions", {field: value}, format="json")

    assert_validation_error(response, field)


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["[]", '["hi"]', '"hello"', "42", "true", "null"])
def test_non_object_body_rejected(alice_client, body):
    response = alice_client.post("/sessions", body, content_type="application/json")

    assert_validation_error(response, "non_field_errors")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    ["{", '{"initial_message": }', "{'a': 1}", "not json", '{"a": NaN}', b"\xff\xfe"],
)
def test_malformed_json_rejected(alice_client, body):
    response = alice_client.post("/sessions", body, content_type="application/json")

    body = assert_error(response, 400)
    assert "JSON" in body["message"]


@pytest.mark.django_db
def test_deeply_nested_json_rejected(alice_client):
    response = alice_client.post("/sessions", "[" * 100_000, content_type="application/json")

    assert_error(response, 400)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type,body",
    [
        ("application/x-www-form-urlencoded", "initial_message=hi"),
        ("text/plain", '{"initial_message": "hi"}'),
        ("multipart/form-data; boundary=x", "--x--"),
    ],
)
def test_wrong_content_type_rejected(alice_client, content_type, body):
    response = alice_client.post("/sessions", body, content_type=content_type)

    body = assert_error(response, 415)
    assert "application/json" in body["message"]


@pytest.mark.django_db
def test_rejected_request_creates_nothing(alice_client):
    alice_client.post("/sessions", {"initial_message": ""}, format="json")
    alice_client.post("/sessions", "[]", content_type="application/json")
    alice_client.post("/sessions", "initial_message=hi", content_type="text/plain")

    assert Conversation.objects.count() == 0
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_no_runtime_unavailable(monkeypatch, alice_client):
    monkeypatch.setattr(get_runtime(), "check_available", raise_unavailable)

    response = alice_client.post("/sessions", {"initial_message": "Hi"}, format="json")

    body = assert_error(response, 503)
    assert body["message"] == "No agent server is ready: start one and retry."
    assert Conversation.objects.count() == 0


@pytest.mark.django_db
def test_failed_start_removes_session(monkeypatch, alice_client):
    monkeypatch.setattr(get_runtime(), "start_session", raise_unavailable)

    response = alice_client.post("/sessions", {"initial_message": "Hi"}, format="json")

    assert_error(response, 503)
    assert Conversation.objects.count() == 0
    assert Event.objects.count() == 0
