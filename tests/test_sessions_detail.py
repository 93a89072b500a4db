"""GET /sessions/{id}: one session of the caller."""
import datetime

import pytest

from sessions.models import Conversation
from tests.helpers import MISSING_ID, assert_error, assert_same_as_missing, create_session


def parse_utc(text):
    assert text.endswith("Z")
    return datetime.datetime.fromisoformat(text)


@pytest.mark.django_db
def test_detail_fields(alice_client):
    session_id = create_session(
        alice_client, initial_message="Fix the tests\nin CI", selected_repository="octocat/hello"
    )

    response = alice_client.get(f"/sessions/{session_id}")

    assert response.status_code == 200
    assert response.json() == {
        "conversation_id": session_id,
        "status": "starting",
        "selected_repository": "octocat/hello",
        "title": "Fix the tests",
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
        "ended_at": None,
        "event_count": 2,
        "last_event_id": 2,
    }


@pytest.mark.django_db
def test_detail_timestamps_utc(alice_client, alice_session):
    body = alice_client.get(f"/sessions/{alice_session}").json()

    created_at = parse_utc(body["created_at"])
    updated_at = parse_utc(body["updated_at"])
    assert created_at.utcoffset() == datetime.timedelta(0)
    assert updated_at >= created_at


@pytest.mark.django_db
def test_detail_without_message(alice_client):
    session_id = create_session(alice_client)

    body = alice_client.get(f"/sessions/{session_id}").json()

    assert body["title"] == ""
    assert body["selected_repository"] == ""
    assert body["event_count"] == 1
    assert body["last_event_id"] == 1


@pytest.mark.django_db
def test_detail_counts_new_messages(alice_client, alice_session):
    alice_client.post(f"/sessions/{alice_session}/messages", {"content": "more"}, format="json")

    body = alice_client.get(f"/sessions/{alice_session}").json()

    assert body["event_count"] == 3
    assert body["last_event_id"] == 3


@pytest.mark.django_db
def test_detail_no_events_yet(alice, alice_client):
    conversation = Conversation.objects.create(owner=alice[0])

    body = alice_client.get(f"/sessions/{conversation.id.hex}").json()

    assert body["event_count"] == 0
    assert body["last_event_id"] is None


@pytest.mark.django_db
def test_detail_with_trailing_slash(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/")

    assert response.status_code == 200
    assert response.json()["conversation_id"] == alice_session


@pytest.mark.django_db
def test_detail_of_ended_session(alice_client, ended_session):
    body = alice_client.get(f"/sessions/{ended_session}").json()

    assert body["status"] == "ended"
    assert parse_utc(body["ended_at"]) >= parse_utc(body["created_at"])
    assert body["event_count"] == 3


@pytest.mark.django_db
def test_detail_missing_session(alice_client):
    response = alice_client.get(f"/sessions/{MISSING_ID}")

    body = assert_error(response, 404)
    assert MISSING_ID in body["message"]


@pytest.mark.django_db
def test_detail_other_owner_like_missing(alice_session, bob_client):
    response = bob_client.get(f"/sessions/{alice_session}")
    missing = bob_client.get(f"/sessions/{MISSING_ID}")

    assert_same_as_missing(response, missing, alice_session)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "session_id",
    ["not-an-id", "123", "z" * 32, "a" * 31, "a" * 33, "0x" + "a" * 30, "%00" * 4],
)
def test_detail_malformed_id(alice_client, alice_session, session_id):
    response = alice_client.get(f"/sessions/{session_id}")

    assert_error(response, 404)


@pytest.mark.django_db
@pytest.mark.parametrize("alias", ["+{rest}", "%20{rest}", "{head}_{tail}"])
def test_detail_malformed_alias_rejected(alice, alice_client, alias):
    session_id = "0" + "a" * 31
    Conversation.objects.create(id=session_id, owner=alice[0])
    rest = session_id[1:]
    path = "/sessions/" + alias.format(rest=rest, head=rest[:-1], tail=rest[-1])

    response = alice_client.get(path)

    assert_error(response, 404)
