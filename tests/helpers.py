"""Assertions and requests shared by the REST tests."""
import uuid

# A well-formed session id that no session has.
MISSING_ID = uuid.UUID(int=1).hex


def create_session(client, **fields):
    """Create a session through the API and return its id."""
    response = client.post("/sessions", fields, format="json")
    assert response.status_code == 201, response.content
    return response.json()["conversation_id"]


def assert_error(response, status_code):
    """Assert the API's JSON error shape with this status and return the decoded body."""
    assert response.status_code == status_code, response.content
    assert response["Content-Type"] == "application/json"
    assert b"<html" not in response.content.lower()
    assert b"Traceback" not in response.content

    body = response.json()
    assert body["error"] is True
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["status_code"] == status_code
    return body


def assert_validation_error(response, field):
    """Assert a 400 whose `errors` lists messages for `field` and return the decoded body."""
    body = assert_error(response, 400)
    assert field in body["errors"]
    assert isinstance(body["errors"][field], list)
    assert body["errors"][field]
    assert all(isinstance(message, str) for message in body["errors"][field])
    return body


def assert_same_as_missing(response, missing_response, conversation_id):
    """Assert that `response`, about `conversation_id`, is the 404 sent for MISSING_ID."""
    body = assert_error(response, 404)
    missing_body = assert_error(missing_response, 404)
    assert body.keys() == missing_body.keys()
    assert body["message"].replace(conversation_id, MISSING_ID) == missing_body["message"]
    return body
