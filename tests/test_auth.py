"""Authentication by API key on every /sessions endpoint, in normal and open mode."""
import datetime

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from sessions.models import ApiKey, Conversation
from tests.helpers import assert_error, create_session

# Every /sessions endpoint as (method, path); `{id}` is replaced by a live session's id.
ENDPOINTS = [
    ("get", "/sessions"),
    ("post", "/sessions"),
    ("get", "/sessions/{id}"),
    ("delete", "/sessions/{id}"),
    ("get", "/sessions/{id}/events"),
    ("post", "/sessions/{id}/messages"),
    ("post", "/sessions/{id}/interrupt"),
]


def client_with_header(value):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=value)
    return client


def assert_unauthorized(response):
    body = assert_error(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"
    return body


@pytest.mark.django_db
@pytest.mark.parametrize(
    "template",
    [
        "Bearer {key}",
        "{key}",
        "bearer {key}",
        "BEARER {key}",
        "bEaReR {key}",
        "  Bearer   {key}  ",
        "\tBearer\t{key}\t",
        "  {key}  ",
    ],
)
def test_header_forms_accepted(alice, template):
    client = client_with_header(template.format(key=alice[1]))

    response = client.get("/sessions")

    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    ["", "   ", "Bearer", "bearer   ", "Bearer a b", "Bearer unknown.key", "unknown-key"],
)
def test_invalid_header_rejected(alice, value):
    response = client_with_header(value).get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_missing_header_rejected(anonymous_client):
    response = anonymous_client.get("/sessions")

    body = assert_unauthorized(response)
    assert "Authorization" in body["message"]


@pytest.mark.django_db
def test_other_scheme_rejected(alice):
    response = client_with_header(f"Token {alice[1]}").get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_key_with_extra_word_rejected(alice):
    response = client_with_header(f"Bearer {alice[1]} extra").get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_wrong_secret_rejected(alice):
    prefix = alice[1].partition(".")[0]

    response = client_with_header(f"Bearer {prefix}.wrong-secret").get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_revoked_key_rejected(alice):
    user, key = alice
    ApiKey.objects.filter(user=user).update(revoked=True)

    response = client_with_header(f"Bearer {key}").get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_expired_key_rejected(alice):
    user, key = alice
    expired = timezone.now() - datetime.timedelta(seconds=1)
    ApiKey.objects.filter(user=user).update(expiry_date=expired)

    response = client_with_header(f"Bearer {key}").get("/sessions")

    body = assert_unauthorized(response)
    assert "expired" in body["message"]


@pytest.mark.django_db
def test_future_expiry_accepted(alice):
    user, key = alice
    tomorrow = timezone.now() + datetime.timedelta(days=1)
    ApiKey.objects.filter(user=user).update(expiry_date=tomorrow)

    response = client_with_header(f"Bearer {key}").get("/sessions")

    assert response.status_code == 200


@pytest.mark.django_db
def test_inactive_user_rejected(alice):
    user, key = alice
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)

    response = client_with_header(f"Bearer {key}").get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_rejection_never_echoes_key(alice):
    user, key = alice
    ApiKey.objects.filter(user=user).update(revoked=True)

    response = client_with_header(f"Bearer {key}").get("/sessions")

    assert key.encode() not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_endpoint_requires_key(alice_session, anonymous_client, method, path):
    url = path.format(id=alice_session)

    response = getattr(anonymous_client, method)(url, {"content": "hi"}, format="json")

    assert_unauthorized(response)


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_endpoint_rejects_unknown_key(alice_session, method, path):
    client = client_with_header("Bearer unknown.key")
    url = path.format(id=alice_session)

    response = getattr(client, method)(url, {"content": "hi"}, format="json")

    assert_unauthorized(response)


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_endpoint_rejected_without_side_effect(alice_session, anonymous_client, method, path):
    url = path.format(id=alice_session)

    getattr(anonymous_client, method)(url, {"content": "hi"}, format="json")

    conversation = Conversation.objects.get()
    assert conversation.status == "starting"
    assert conversation.last_event_seq == 2


@pytest.mark.django_db
def test_open_mode_accepts_any_token(open_mode):
    client = client_with_header("Bearer any-token-at-all")

    response = client.post("/sessions", {}, format="json")

    assert response.status_code == 201


@pytest.mark.django_db
def test_open_mode_accepts_bare_token(open_mode):
    client = client_with_header("any-token-at-all")

    response = client.get("/sessions")

    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["", "   ", "Bearer", "Bearer a b"])
def test_open_mode_rejects_empty_token(open_mode, value):
    response = client_with_header(value).get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_open_mode_owner_named_by_hash(open_mode):
    token = "open-mode-secret-token"

    session_id = create_session(client_with_header(f"Bearer {token}"))

    owner = Conversation.objects.get(pk=session_id).owner
    assert owner.username.startswith("token-")
    assert token not in owner.username
    assert not owner.has_usable_password()


@pytest.mark.django_db
def test_open_mode_same_token_same_owner(open_mode):
    session_id = create_session(client_with_header("Bearer token-one"))

    response = client_with_header("token-one").get(f"/sessions/{session_id}")

    assert response.status_code == 200


@pytest.mark.django_db
def test_open_mode_tokens_isolated(open_mode):
    session_id = create_session(client_with_header("Bearer token-a"))
    client_b = client_with_header("Bearer token-b")

    detail = client_b.get(f"/sessions/{session_id}")
    listing = client_b.get("/sessions")

    assert_error(detail, 404)
    assert listing.json()["count"] == 0


@pytest.mark.django_db
def test_open_mode_tokens_distinct_owners(open_mode):
    first = create_session(client_with_header("Bearer token-a"))
    second = create_session(client_with_header("Bearer token-b"))

    first_owner = Conversation.objects.get(pk=first).owner
    second_owner = Conversation.objects.get(pk=second).owner
    assert first_owner != second_owner


@pytest.mark.django_db
def test_open_mode_real_key_keeps_user(open_mode, alice, alice_client):
    session_id = create_session(alice_client)

    assert Conversation.objects.get(pk=session_id).owner == alice[0]


@pytest.mark.django_db
def test_open_mode_hides_key_sessions(open_mode, alice_session):
    response = client_with_header("Bearer someone-else").get(f"/sessions/{alice_session}")

    assert_error(response, 404)


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["Bearer a\x00b", "a\x00b", "Bearer a\x07b", "Bearer a\x7fb"])
def test_control_characters_rejected(alice, value):
    response = client_with_header(value).get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_open_mode_rejects_control_characters(open_mode):
    response = client_with_header("Bearer a\x00b").get("/sessions")

    assert_unauthorized(response)


@pytest.mark.django_db
def test_open_mode_rejects_revoked_key(open_mode, alice):
    ApiKey.objects.filter(user=alice[0]).update(revoked=True)
    client = APIClient()

    response = client.get("/sessions", HTTP_AUTHORIZATION=f"Bearer {alice[1]}")

    body = assert_error(response, 401)
    assert "revoked" in body["message"]
