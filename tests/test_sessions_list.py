"""GET /sessions: the caller's sessions, newest first, paginated and filterable by status."""
import datetime

import pytest
from django.utils import timezone

from sessions.models import Conversation
from tests.helpers import assert_error, assert_validation_error, create_session

SESSION_FIELDS = {
    "conversation_id",
    "status",
    "selected_repository",
    "title",
    "created_at",
    "updated_at",
    "ended_at",
    "event_count",
    "last_event_id",
}


def create_sessions(client, count):
    """Create `count` sessions one second apart and return their ids, oldest first."""
    ids = [create_session(client) for _ in range(count)]
    start = timezone.now() - datetime.timedelta(hours=1)
    for offset, session_id in enumerate(ids):
        created_at = start + datetime.timedelta(seconds=offset)
        Conversation.objects.filter(pk=session_id).update(created_at=created_at)
    return ids


def listed_ids(response):
    return [session["conversation_id"] for session in response.json()["results"]]


@pytest.mark.django_db
def test_list_empty(alice_client):
    response = alice_client.get("/sessions")

    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.django_db
def test_list_with_trailing_slash(alice_client, alice_session):
    response = alice_client.get("/sessions/")

    assert response.status_code == 200
    assert listed_ids(response) == [alice_session]


@pytest.mark.django_db
def test_list_newest_first(alice_client):
    ids = create_sessions(alice_client, 3)

    response = alice_client.get("/sessions")

    assert listed_ids(response) == list(reversed(ids))


@pytest.mark.django_db
def test_list_only_own_sessions(alice_client, bob_client):
    alice_ids = create_sessions(alice_client, 2)
    bob_id = create_session(bob_client)

    alice_response = alice_client.get("/sessions")
    bob_response = bob_client.get("/sessions")

    assert set(listed_ids(alice_response)) == set(alice_ids)
    assert alice_response.json()["count"] == 2
    assert listed_ids(bob_response) == [bob_id]


@pytest.mark.django_db
def test_list_item_fields(alice_client, alice_session):
    response = alice_client.get("/sessions")

    item = response.json()["results"][0]
    assert item.keys() == SESSION_FIELDS
    assert item == alice_client.get(f"/sessions/{alice_session}").json()


@pytest.mark.django_db
def test_list_first_page(alice_client):
    ids = create_sessions(alice_client, 5)

    response = alice_client.get("/sessions", {"page_size": 2})

    body = response.json()
    assert body["count"] == 5
    assert listed_ids(response) == [ids[4], ids[3]]
    assert body["previous"] is None
    assert "page=2" in body["next"]
    assert "page_size=2" in body["next"]


@pytest.mark.django_db
def test_list_middle_page(alice_client):
    ids = create_sessions(alice_client, 5)

    response = alice_client.get("/sessions", {"page_size": 2, "page": 2})

    body = response.json()
    assert listed_ids(response) == [ids[2], ids[1]]
    assert body["previous"] is not None
    assert "page=3" in body["next"]


@pytest.mark.django_db
def test_list_last_page(alice_client):
    ids = create_sessions(alice_client, 5)

    response = alice_client.get("/sessions", {"page_size": 2, "page": 3})

    body = response.json()
    assert listed_ids(response) == [ids[0]]
    assert body["next"] is None
    assert "page=2" in body["previous"]


@pytest.mark.django_db
def test_list_next_links_cover_all(alice_client):
    ids = create_sessions(alice_client, 5)
    seen = []

    url = "/sessions?page_size=2"
    for _ in range(10):
        response = alice_client.get(url)
        assert response.status_code == 200
        seen.extend(listed_ids(response))
        url = response.json()["next"]
        if url is None:
            break

    assert seen == list(reversed(ids))


@pytest.mark.django_db
def test_list_default_page_size(alice_client):
    create_sessions(alice_client, 21)

    response = alice_client.get("/sessions")

    assert response.json()["count"] == 21
    assert len(listed_ids(response)) == 20
    assert response.json()["next"] is not None


@pytest.mark.django_db
def test_list_page_size_max_accepted(alice_client, alice_session):
    response = alice_client.get("/sessions", {"page_size": 100})

    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", ["101", "0", "-1", "ten"])
def test_invalid_page_size_rejected(alice_client, page_size):
    response = alice_client.get("/sessions", {"page_size": page_size})

    assert_validation_error(response, "page_size")


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["0", "-1", "first"])
def test_invalid_page_rejected(alice_client, page):
    response = alice_client.get("/sessions", {"page": page})

    assert_validation_error(response, "page")


@pytest.mark.django_db
def test_page_past_end_not_found(alice_client, alice_session):
    response = alice_client.get("/sessions", {"page": 2})

    assert_error(response, 404)


@pytest.mark.django_db
def test_list_filter_by_status(alice_client):
    live_id, ended_id = create_sessions(alice_client, 2)
    alice_client.delete(f"/sessions/{ended_id}")

    ended = alice_client.get("/sessions", {"status": "ended"})
    starting = alice_client.get("/sessions", {"status": "starting"})
    running = alice_client.get("/sessions", {"status": "running"})

    assert listed_ids(ended) == [ended_id]
    assert listed_ids(starting) == [live_id]
    assert listed_ids(running) == []


@pytest.mark.django_db
def test_status_filter_counts_matches(alice_client):
    ids = create_sessions(alice_client, 3)
    alice_client.delete(f"/sessions/{ids[0]}")

    response = alice_client.get("/sessions", {"status": "starting"})

    assert response.json()["count"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["bogus", "ENDED", "ended,starting"])
def test_invalid_status_rejected(alice_client, status):
    response = alice_client.get(f"/sessions?status={status}")

    assert_validation_error(response, "status")


@pytest.mark.django_db
def test_empty_status_not_filtered(alice_client, alice_session):
    response = alice_client.get("/sessions?status=")

    assert listed_ids(response) == [alice_session]


@pytest.mark.django_db
def test_list_shows_ended_session(alice_client, ended_session):
    response = alice_client.get("/sessions")

    item = response.json()["results"][0]
    assert item["conversation_id"] == ended_session
    assert item["status"] == "ended"
    assert item["ended_at"] is not None
