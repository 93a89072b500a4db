from tests.agent_fixtures import *  # noqa: F401,F403  (fixtures for real agent tests)

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from sessions.models import ApiKey


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Close the test database's other connections before pytest-django drops it.

    Worker threads of async tests keep their own connections, which PostgreSQL would refuse to
    drop the database under.
    """
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def make_user_with_key(username):
    user = get_user_model().objects.create(username=username)
    _, key = ApiKey.objects.create_key(user=user, name=f"{username} key")
    return user, key


@pytest.fixture
def alice(db):
    return make_user_with_key("alice")


@pytest.fixture
def bob(db):
    return make_user_with_key("bob")


@pytest.fixture
def alice_client(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice[1]}")
    return client


@pytest.fixture
def bob_client(bob):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bob[1]}")
    return client


@pytest.fixture
def daphne(transactional_db):
    """A real daphne process on 127.0.0.1 sharing the test database (no agent runtime)."""
    from tests.servers import DaphneServer

    server = DaphneServer().start()
    yield server
    server.stop()


@pytest.fixture
def anonymous_client(db):
    return APIClient()


@pytest.fixture
def open_mode(settings):
    """Accept any non-empty token, each distinct token being its own owner."""
    settings.ALLOW_ANY_TOKEN = True


@pytest.fixture
def alice_session(alice_client):
    """Id of a live session of alice, created with an initial message (events 1 and 2)."""
    response = alice_client.post("/sessions", {"initial_message": "Hello"}, format="json")
    assert response.status_code == 201
    return response.json()["conversation_id"]


@pytest.fixture
def ended_session(alice_client, alice_session):
    """Id of a session of alice ended with DELETE (events 1 to 3)."""
    response = alice_client.delete(f"/sessions/{alice_session}")
    assert response.status_code == 200
    return alice_session
