"""GET /sessions/{id}/events: a session's stored events, paged with `after` and `limit`."""
import datetime

import pytest

from tests.helpers import (
    MISSING_ID,
    assert_error,
    assert_same_as_missing,
    assert_validation_error,
    create_session,
)


def session_with_events(client, count):
    """Create a session with `count` events: a status event, then user messages."""
    session_id = create_session(client)
    for number in range(2, count + 1):
        response = client.post(
            f"/sessions/{session_id}/messages", {"content": f"message {number}"}, format="json"
        )
        assert response.status_code == 202
    return session_id


def event_ids(response):
    return [event["id"] for event in response.json()["events"]]


@pytest.mark.django_db
def test_events_of_new_session(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/events")

    assert response.status_code == 200
    body = response.json()
    assert body.keys() == {"events", "has_more"}
    assert event_ids(response) == [1, 2]
    assert body["has_more"] is False


@pytest.mark.django_db
def test_status_event_fields(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/events")

    event = response.json()["events"][0]
    assert event.keys() == {"id", "type", "content", "source", "timestamp", "status"}
    assert event["type"] == "status"
    assert event["status"] == "starting"
    assert event["source"] == "environment"
    assert isinstance(event["content"], str)


@pytest.mark.django_db
def test_user_message_fields(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/events")

    event = response.json()["events"][1]
    assert event.keys() == {"id", "type", "content", "source", "timestamp"}
    assert event["type"] == "user_message"
    assert event["content"] == "Hello"
    assert event["source"] == "user"


@pytest.mark.django_db
def test_event_timestamps_utc(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/events")

    for event in response.json()["events"]:
        assert event["timestamp"].endswith("Z")
        timestamp = datetime.datetime.fromisoformat(event["timestamp"])
        assert timestamp.utcoffset() == datetime.timedelta(0)


@pytest.mark.django_db
def test_events_with_trailing_slash(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/events/")

    assert response.status_code == 200
    assert event_ids(response) == [1, 2]


@pytest.mark.django_db
def test_event_ids_gap_free(alice_client):
    session_id = session_with_events(alice_client, 12)

    response = alice_client.get(f"/sessions/{session_id}/events")

    assert event_ids(response) == list(range(1, 13))


@pytest.mark.django_db
def test_events_after_id(alice_client, alice_session):
    response = alice_client.get(f"/sessions/{alice_session}/events", {"after": 1})

    assert event_ids(response) == [2]
    assert response.json()["has_more"] is False


@pytest.mark.django_db
@pytest.mark.parametrize("after", [2, 3, 1000])
def test_events_after_last(alice_client, alice_session, after):
    response = alice_client.get(f"/sessions/{alice_session}/events", {"after": after})

    assert response.status_code == 200
    assert response.json() == {"events": [], "has_more": False}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "after,limit,expected_ids,has_more",
    [
        (0, 3, [1, 2, 3], True),
        (3, 3, [4, 5, 6], True),
        (6, 3, [7], False),
        (4, 3, [5, 6, 7], False),
        (0, 7, [1, 2, 3, 4, 5, 6, 7], False),
        (0, 6, [1, 2, 3, 4, 5, 6], True),
        (6, 1, [7], False),
        (5, 1, [6], True),
        (0, 500, [1, 2, 3, 4, 5, 6, 7], False),
    ],
)
def test_events_paging_boundaries(alice_client, after, limit, expected_ids, has_more):
    session_id = session_with_events(alice_client, 7)

    response = alice_client.get(
        f"/sessions/{session_id}/events", {"after": after, "limit": limit}
    )

    assert event_ids(response) == expected_ids
    assert response.json()["has_more"] is has_more


@pytest.mark.django_db
def test_events_paging_covers_all(alice_client):
    session_id = session_with_events(alice_client, 10)
    seen = []

    after = 0
    for _ in range(10):
        response = alice_client.get(f"/sessions/{session_id}/events", {"after": after, "limit": 3})
        seen.extend(event_ids(response))
        if not response.json()["has_more"]:
            break
        after = seen[-1]

    assert seen == list(range(1, 11))


@pytest.mark.django_db
def test_events_default_limit(alice_client):
    session_id = session_with_events(alice_client, 101)

    response = alice_client.get(f"/sessions/{session_id}/events")

    assert event_ids(response) == list(range(1, 101))
    assert response.json()["has_more"] is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field,value",
    [
        ("after", "-1"),
        ("after", "abc"),
        ("after", "1.5"),
        ("limit", "0"),
        ("limit", "-3"),
        ("limit", "abc"),
        ("limit", "501"),
    ],
)
def test_invalid_paging_rejected(alice_client, alice_session, field, value):
    response = alice_client.get(f"/sessions/{alice_session}/events", {field: value})

    assert_validation_error(response, field)


@pytest.mark.django_db
def test_events_of_ended_session(alice_client, ended_session):
    response = alice_client.get(f"/sessions/{ended_session}/events")

    last = response.json()["events"][-1]
    assert event_ids(response) == [1, 2, 3]
    assert last["type"] == "status"
    assert last["status"] == "ended"


@pytest.mark.django_db
def test_events_missing_session(alice_client):
    response = alice_client.get(f"/sessions/{MISSING_ID}/events")

    assert_error(response, 404)


@pytest.mark.django_db
def test_events_malformed_id(alice_client):
    response = alice_client.get("/sessions/not-an-id/events")

    assert_error(response, 404)


@pytest.mark.django_db
def test_events_other_owner_like_missing(alice_session, bob_client):
    response = bob_client.get(f"/sessions/{alice_session}/events")
    missing = bob_client.get(f"/sessions/{MISSING_ID}/events")

    assert_same_as_missing(response, missing, alice_session)


@pytest.mark.django_db
def test_events_other_owner_invalid_paging(alice_session, bob_client):
    response = bob_client.get(f"/sessions/{alice_session}/events", {"after": "abc"})

    assert_error(response, 404)
