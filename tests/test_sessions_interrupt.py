"""POST /sessions/{id}/interrupt: stop the agent's current turn."""
import pytest

from sessions.models import Conversation
from tests.helpers import MISSING_ID, assert_error, assert_same_as_missing


@pytest.mark.django_db
def test_interrupt_accepted(alice_client, alice_session):
    response = alice_client.post(f"/sessions/{alice_session}/interrupt")

    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}


@pytest.mark.django_db
def test_interrupt_with_trailing_slash(alice_client, alice_session):
    response = alice_client.post(f"/sessions/{alice_session}/interrupt/")

    assert response.status_code == 202


@pytest.mark.django_db
def test_interrupt_with_json_body(alice_client, alice_session):
    response = alice_client.post(f"/sessions/{alice_session}/interrupt", {}, format="json")

    assert response.status_code == 202


@pytest.mark.django_db
def test_interrupt_keeps_session_live(alice_client, alice_session):
    alice_client.post(f"/sessions/{alice_session}/interrupt")

    conversation = Conversation.objects.get(pk=alice_session)
    assert conversation.status == "starting"
    assert conversation.ended_at is None


@pytest.mark.django_db
def test_interrupt_then_message(alice_client, alice_session):
    alice_client.post(f"/sessions/{alice_session}/interrupt")

    response = alice_client.post(
        f"/sessions/{alice_session}/messages", {"content": "go on"}, format="json"
    )

    assert response.status_code == 202


@pytest.mark.django_db
def test_interrupt_ended_session(alice_client, ended_session):
    response = alice_client.post(f"/sessions/{ended_session}/interrupt")

    body = assert_error(response, 404)
    assert "ended" in body["message"]


@pytest.mark.django_db
def test_interrupt_missing_session(alice_client):
    response = alice_client.post(f"/sessions/{MISSING_ID}/interrupt")

    assert_error(response, 404)


@pytest.mark.django_db
def test_interrupt_malformed_id(alice_client):
    response = alice_client.post("/sessions/not-an-id/interrupt")

    assert_error(response, 404)


@pytest.mark.django_db
def test_interrupt_other_owner_like_missing(alice_session, bob_client):
    response = bob_client.post(f"/sessions/{alice_session}/interrupt")
    missing = bob_client.post(f"/sessions/{MISSING_ID}/interrupt")

    assert_same_as_missing(response, missing, alice_session)


@pytest.mark.django_db
def test_interrupt_get_not_allowed(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/interrupt")

    assert_error(response, 405)
    assert "POST" in response["Allow"]
