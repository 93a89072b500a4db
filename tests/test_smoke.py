import pytest


@pytest.mark.django_db
def test_create_session(alice_client):
    response = alice_client.post("/sessions", {"initial_message": "hi"}, format="json")

    assert response.status_code == 201
    assert response.json()["status"] == "ok"
