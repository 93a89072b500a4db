"""DELETE /sessions/{id}: end a session, which stays readable."""
import pytest

from sessions.models import Conversation, Event
from tests.helpers import MISSING_ID, assert_error, assert_same_as_missing

ENDED_BODY = {"status": "success", "message": "Session ended successfully"}


@pytest.mark.django_db
def test_delete_ends_session(alice_client, alice_session):
    response = alice_client.delete(f"/sessions/{alice_session}")

    assert response.status_code == 200
    assert response.json() == ENDED_BODY


@pytest.mark.django_db
def test_delete_with_trailing_slash(alice_client, alice_session):
    response = alice_client.delete(f"/sessions/{alice_session}/")

    assert response.status_code == 200
    assert response.json() == ENDED_BODY


@pytest.mark.django_db
def test_delete_keeps_session(alice_client, alice_session):
    alice_client.delete(f"/sessions/{alice_session}")

    conversation = Conversation.objects.get(pk=alice_session)
    assert conversation.status == "ended"
    assert conversation.ended_at is not None
    assert Event.objects.filter(conversation=conversation).count() == 3


@pytest.mark.django_db
def test_delete_records_status_event(alice_client, alice_session):
    alice_client.delete(f"/sessions/{alice_session}")

    event = Event.objects.get(conversation_id=alice_session, seq=3)
    assert event.type == "status"
    assert event.data == {"status": "ended"}
    assert event.source == "environment"


@pytest.mark.django_db
def test_ended_session_still_listed(alice_client, ended_session):
    response = alice_client.get("/sessions")

    assert [item["conversation_id"] for item in response.json()["results"]] == [ended_session]


@pytest.mark.django_db
def test_ended_session_detail_readable(alice_client, ended_session):
    response = alice_client.get(f"/sessions/{ended_session}")

    assert response.status_code == 200
    assert response.json()["status"] == "ended"
    assert response.json()["ended_at"] is not None


@pytest.mark.django_db
def test_delete_twice_not_found(alice_client, ended_session):
    response = alice_client.delete(f"/sessions/{ended_session}")

    body = assert_error(response, 404)
    assert "ended" in body["message"]


@pytest.mark.django_db
def test_delete_twice_adds_no_event(alice_client, ended_session):
    alice_client.delete(f"/sessions/{ended_session}")

    assert Conversation.objects.get(pk=ended_session).last_event_seq == 3


@pytest.mark.django_db
def test_ended_session_rejects_message(alice_client, ended_session):
    response = alice_client.post(
        f"/sessions/{ended_session}/messages", {"content": "still there?"}, format="json"
    )

    assert_error(response, 404)
    assert Conversation.objects.get(pk=ended_session).last_event_seq == 3


@pytest.mark.django_db
def test_ended_session_rejects_interrupt(alice_client, ended_session):
    response = alice_client.post(f"/sessions/{ended_session}/interrupt")

    assert_error(response, 404)


@pytest.mark.django_db
def test_delete_missing_session(alice_client):
    response = alice_client.delete(f"/sessions/{MISSING_ID}")

    assert_error(response, 404)


@pytest.mark.django_db
def test_delete_malformed_id(alice_client):
    response = alice_client.delete("/sessions/not-an-id")

    assert_error(response, 404)


@pytest.mark.django_db
def test_delete_other_owner_like_missing(alice_session, bob_client):
    response = bob_client.delete(f"/sessions/{alice_session}")
    missing = bob_client.delete(f"/sessions/{MISSING_ID}")

    assert_same_as_missing(response, missing, alice_session)


@pytest.mark.django_db
def test_delete_other_owner_keeps_session(alice_session, bob_client):
    bob_client.delete(f"/sessions/{alice_session}")

    conversation = Conversation.objects.get(pk=alice_session)
    assert conversation.status == "starting"
    assert conversation.ended_at is None


@pytest.mark.django_db
def test_ended_other_owner_like_missing(ended_session, bob_client):
    response = bob_client.delete(f"/sessions/{ended_session}")
    missing = bob_client.delete(f"/sessions/{MISSING_ID}")

    assert_same_as_missing(response, missing, ended_session)
