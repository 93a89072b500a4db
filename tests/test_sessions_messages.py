"""POST /sessions/{id}/messages: send a user message to a live session."""
import pytest
from django.conf import settings

from sessions.models import Event
from tests.helpers import (
    MISSING_ID,
    assert_error,
    assert_same_as_missing,
    assert_validation_error,
)


def post_message(client, session_id, body, **kwargs):
    if "content_type" not in kwargs:
        kwargs["format"] = "json"
    return client.post(f"/sessions/{session_id}/messages", body, **kwargs)


@pytest.mark.django_db
def test_message_accepted(alice_client, alice_session):
    response = post_message(alice_client, alice_session, {"content": "Run the tests"})

    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "event_id": 3}


@pytest.mark.django_db
def test_message_with_trailing_slash(alice_client, alice_session):
    response = alice_client.post(
        f"/sessions/{alice_session}/messages/", {"content": "hi"}, format="json"
    )

    assert response.status_code == 202


@pytest.mark.django_db
def test_message_stored_as_event(alice_client, alice_session):
    post_message(alice_client, alice_session, {"content": "Run the tests"})

    event = Event.objects.get(conversation_id=alice_session, seq=3)
    assert event.type == "user_message"
    assert event.source == "user"
    assert event.content == "Run the tests"


@pytest.mark.django_db
def test_message_listed_in_events(alice_client, alice_session):
    post_message(alice_client, alice_session, {"content": "Run the tests"})

    response = alice_client.get(f"/sessions/{alice_session}/events", {"after": 2})

    event = response.json()["events"][0]
    assert event["id"] == 3
    assert event["type"] == "user_message"
    assert event["content"] == "Run the tests"


@pytest.mark.django_db
def test_message_content_kept_verbatim(alice_client, alice_session):
    content = "  indented\n\ttext with ünïcode ✓  \n"

    post_message(alice_client, alice_session, {"content": content})

    assert Event.objects.get(conversation_id=alice_session, seq=3).content == content


@pytest.mark.django_db
def test_message_ids_increase(alice_client, alice_session):
    ids = []
    for number in range(3):
        response = post_message(alice_client, alice_session, {"content": f"message {number}"})
        ids.append(response.json()["event_id"])

    assert ids == [3, 4, 5]


@pytest.mark.django_db
def test_longest_message_accepted(alice_client, alice_session):
    body = {"content": "m" * settings.MAX_MESSAGE_CHARS}

    response = post_message(alice_client, alice_session, body)

    assert response.status_code == 202


@pytest.mark.django_db
def test_too_long_message_rejected(alice_client, alice_session):
    body = {"content": "m" * (settings.MAX_MESSAGE_CHARS + 1)}

    response = post_message(alice_client, alice_session, body)

    assert_validation_error(response, "content")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": ""},
        {"content": "   "},
        {"content": "\n\t"},
        {"content": None},
        {"content": 5},
        {"content": 1.5},
        {"content": True},
        {"content": ["hi"]},
        {"content": {"text": "hi"}},
    ],
)
def test_invalid_content_rejected(alice_client, alice_session, body):
    response = post_message(alice_client, alice_session, body)

    assert_validation_error(response, "content")


@pytest.mark.django_db
def test_unknown_field_rejected(alice_client, alice_session):
    response = post_message(alice_client, alice_session, {"content": "hi", "role": "system"})

    assert_validation_error(response, "role")


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["[]", '"hi"', "null", "{"])
def test_invalid_body_rejected(alice_client, alice_session, body):
    response = post_message(alice_client, alice_session, body, content_type="application/json")

    assert_error(response, 400)


@pytest.mark.django_db
def test_wrong_content_type_rejected(alice_client, alice_session):
    response = post_message(
        alice_client, alice_session, "content=hi", content_type="application/x-www-form-urlencoded"
    )

    assert_error(response, 415)


@pytest.mark.django_db
def test_rejected_message_not_stored(alice_client, alice_session):
    post_message(alice_client, alice_session, {"content": ""})
    post_message(alice_client, alice_session, {"content": "hi", "extra": 1})

    assert Event.objects.filter(conversation_id=alice_session).count() == 2


@pytest.mark.django_db
def test_message_missing_session(alice_client):
    response = post_message(alice_client, MISSING_ID, {"content": "hi"})

    assert_error(response, 404)


@pytest.mark.django_db
def test_message_malformed_id(alice_client):
    response = post_message(alice_client, "not-an-id", {"content": "hi"})

    assert_error(response, 404)


@pytest.mark.django_db
def test_message_other_owner_like_missing(alice_session, bob_client):
    response = post_message(bob_client, alice_session, {"content": "hi"})
    missing = post_message(bob_client, MISSING_ID, {"content": "hi"})

    assert_same_as_missing(response, missing, alice_session)
    assert Event.objects.filter(conversation_id=alice_session).count() == 2


@pytest.mark.django_db
def test_message_to_ended_session(alice_client, ended_session):
    response = post_message(alice_client, ended_session, {"content": "hi"})

    body = assert_error(response, 404)
    assert "ended" in body["message"]
