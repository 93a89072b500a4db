"""Every API error is JSON `{"error": true, "message", "status_code"}`, from DRF or Django."""
import logging

import pytest
from django.test import Client
from rest_framework.test import APIClient

from sessions import services
from tests.helpers import MISSING_ID, assert_error, assert_validation_error

ERROR_KEYS = {"error", "message", "status_code"}


@pytest.fixture
def tolerant_client(alice):
    """An APIClient of alice that returns 500 responses instead of raising the exception."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice[1]}")
    return client


def raise_unexpected(*args, **kwargs):
    raise RuntimeError("unexpected failure with internal detail")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope",
        "/api/sessions",
        "/sessions/{id}/nope",
        "/sessions/{id}/events/extra",
        "/healthz/x",
    ],
)
def test_unknown_url_json(alice_client, alice_session, path):
    response = alice_client.get(path.format(id=alice_session))

    body = assert_error(response, 404)
    assert body.keys() == ERROR_KEYS


@pytest.mark.django_db
def test_unknown_url_without_key(anonymous_client):
    response = anonymous_client.get("/nope")

    assert_error(response, 404)


@pytest.mark.django_db
def test_unknown_url_json_in_debug(settings, alice_client):
    settings.DEBUG = True

    response = alice_client.get("/nope")

    assert_error(response, 404)


@pytest.mark.django_db
def test_not_found_session_shape(alice_client):
    response = alice_client.get(f"/sessions/{MISSING_ID}")

    body = assert_error(response, 404)
    assert body.keys() == ERROR_KEYS


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("put", "/sessions", {"GET", "POST"}),
        ("delete", "/sessions", {"GET", "POST"}),
        ("patch", "/sessions/", {"GET", "POST"}),
        ("put", "/sessions/{id}", {"GET", "DELETE"}),
        ("patch", "/sessions/{id}/", {"GET", "DELETE"}),
        ("post", "/sessions/{id}", {"GET", "DELETE"}),
        ("post", "/sessions/{id}/events", {"GET"}),
        ("delete", "/sessions/{id}/events/", {"GET"}),
        ("get", "/sessions/{id}/messages", {"POST"}),
        ("put", "/sessions/{id}/messages/", {"POST"}),
        ("get", "/sessions/{id}/interrupt", {"POST"}),
    ],
)
def test_wrong_method_json(alice_client, alice_session, method, path, allowed):
    response = getattr(alice_client, method)(path.format(id=alice_session))

    assert_error(response, 405)
    listed = {name.strip() for name in response["Allow"].split(",")}
    assert allowed <= listed
    assert method.upper() not in listed


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_wrong_method_on_healthz(anonymous_client, method):
    response = getattr(anonymous_client, method)("/healthz")

    assert_error(response, 405)
    assert "GET" in response["Allow"]


@pytest.mark.django_db
def test_body_too_large_on_create(settings, alice_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    response = alice_client.post("/sessions", {"initial_message": "x" * 2000}, format="json")

    body = assert_error(response, 413)
    assert "1024" in body["message"]


@pytest.mark.django_db
def test_body_too_large_on_message(settings, alice_client, alice_session):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    response = alice_client.post(
        f"/sessions/{alice_session}/messages", {"content": "x" * 2000}, format="json"
    )

    assert_error(response, 413)


@pytest.mark.django_db
def test_body_at_limit_accepted(settings, alice_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    message = "x" * (1024 - len('{"initial_message":""}'))

    response = alice_client.post(
        "/sessions", f'{{"initial_message":"{message}"}}', content_type="application/json"
    )

    assert response.status_code == 201


@pytest.mark.django_db
def test_body_too_large_stores_nothing(settings, alice_client, alice_session):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    alice_client.post(f"/sessions/{alice_session}/messages", {"content": "x" * 2000}, format="json")

    assert alice_client.get(f"/sessions/{alice_session}").json()["event_count"] == 2


@pytest.mark.django_db
def test_unsupported_media_type_json(alice_client):
    response = alice_client.post("/sessions", "<xml/>", content_type="application/xml")

    body = assert_error(response, 415)
    assert "application/xml" in body["message"]


@pytest.mark.django_db
def test_validation_error_lists_fields(alice_client):
    response = alice_client.post(
        "/sessions", {"initial_message": "", "selected_repository": "x"}, format="json"
    )

    body = assert_validation_error(response, "initial_message")
    assert "selected_repository" in body["errors"]
    assert "initial_message" in body["message"]
    assert "selected_repository" in body["message"]


@pytest.mark.django_db
def test_parse_error_shape(alice_client):
    response = alice_client.post("/sessions", "{", content_type="application/json")

    body = assert_error(response, 400)
    assert body.keys() == ERROR_KEYS


@pytest.mark.django_db
def test_unhandled_error_json(monkeypatch, tolerant_client):
    monkeypatch.setattr(services, "create_session", raise_unexpected)

    response = tolerant_client.post("/sessions", {}, format="json")

    body = assert_error(response, 500)
    assert body.keys() == ERROR_KEYS
    assert b"internal detail" not in response.content
    assert b"RuntimeError" not in response.content


@pytest.mark.django_db
def test_unhandled_error_json_in_debug(settings, monkeypatch, tolerant_client):
    settings.DEBUG = True
    monkeypatch.setattr(services, "send_message", raise_unexpected)
    session_id = tolerant_client.post("/sessions", {}, format="json").json()["conversation_id"]

    response = tolerant_client.post(
        f"/sessions/{session_id}/messages", {"content": "hi"}, format="json"
    )

    assert_error(response, 500)
    assert b"internal detail" not in response.content


@pytest.mark.django_db
def test_unhandled_error_logged(monkeypatch, caplog, tolerant_client):
    monkeypatch.setattr(services, "create_session", raise_unexpected)

    with caplog.at_level(logging.ERROR, logger="sessions.http_errors"):
        tolerant_client.post("/sessions", {}, format="json")

    records = [record for record in caplog.records if record.name == "sessions.http_errors"]
    assert len(records) == 1
    assert "POST /sessions" in records[0].getMessage()
    assert records[0].exc_info is not None


@pytest.mark.django_db
def test_unhandled_error_outside_drf(monkeypatch):
    class BrokenConnection:
        def cursor(self):
            raise RuntimeError("unexpected failure with internal detail")

    monkeypatch.setattr("sessions.views.connection", BrokenConnection())

    response = Client(raise_request_exception=False).get("/healthz")

    assert_error(response, 500)
    assert b"internal detail" not in response.content


@pytest.mark.django_db
def test_admin_errors_stay_html(admin_client):
    response = admin_client.get("/admin/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
