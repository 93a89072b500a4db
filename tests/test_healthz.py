"""GET /healthz: 200 while a database query succeeds, 503 with the JSON error shape otherwise."""
import pytest
from django.db import OperationalError
from django.test import Client

from tests.helpers import assert_error


class UnreachableDatabase:
    """Replacement for `django.db.connection` whose cursor() fails as with an unreachable server."""

    def cursor(self):
        raise OperationalError("connection refused")


@pytest.mark.django_db
def test_healthz_ok():
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_healthz_with_trailing_slash():
    response = Client().get("/healthz/")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_healthz_head():
    response = Client().head("/healthz")

    assert response.status_code == 200


@pytest.mark.django_db
def test_healthz_ignores_bad_key():
    response = Client().get("/healthz", headers={"Authorization": "Bearer unknown.key"})

    assert response.status_code == 200


@pytest.mark.django_db
def test_healthz_database_down(monkeypatch):
    monkeypatch.setattr("sessions.views.connection", UnreachableDatabase())

    response = Client().get("/healthz")

    body = assert_error(response, 503)
    assert "Database unavailable" in body["message"]


@pytest.mark.django_db
def test_healthz_recovers(monkeypatch):
    monkeypatch.setattr("sessions.views.connection", UnreachableDatabase())
    Client().get("/healthz")
    monkeypatch.undo()

    response = Client().get("/healthz")

    assert response.status_code == 200
