from tests.agent_fixtures import *  # noqa: F401,F403  (fixtures for real agent tests)

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from sessions.models import ApiKey


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
