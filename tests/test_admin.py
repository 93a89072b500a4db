"""The Django admin: sessions, their events and API keys, for a logged-in superuser."""
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sessions import services
from sessions.models import ApiKey, Conversation, Event
from tests.helpers import create_session

CONVERSATIONS_URL = "/admin/agent_sessions/conversation/"
EVENTS_URL = "/admin/agent_sessions/event/"
API_KEYS_URL = "/admin/agent_sessions/apikey/"
GITHUB_TOKEN = "ghp_adminTestToken1234567890abcdef"


@pytest.fixture
def superuser_client(db):
    user = get_user_model().objects.create_superuser(username="root", password=None)
    client = Client()
    client.force_login(user)
    return client


def change_url(conversation_id):
    return f"{CONVERSATIONS_URL}{conversation_id}/change/"


def listed_conversations(response):
    return {conversation.id.hex for conversation in response.context["cl"].result_list}


def key_from_messages(response):
    """Return the new key from the message the admin shows once after adding an API key."""
    texts = [str(message) for message in response.context["messages"] if " is: " in str(message)]
    assert len(texts) == 1
    return texts[0].split(" is: ")[1].split(". ")[0]


def session_with_events(client, count):
    session_id = create_session(client)
    for number in range(2, count + 1):
        services.record_user_message(uuid.UUID(session_id), f"message {number}")
    return session_id


@pytest.mark.django_db
def test_admin_requires_login(alice_session):
    response = Client().get(CONVERSATIONS_URL)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_conversation_list_columns(superuser_client, alice_client):
    session_id = create_session(
        alice_client, selected_repository="octocat/hello-world", initial_message="Hi"
    )

    response = superuser_client.get(CONVERSATIONS_URL)

    content = response.content.decode()
    assert response.status_code == 200
    assert session_id in content
    assert "alice" in content
    assert "starting" in content
    assert "octocat/hello-world" in content
    assert response.context["cl"].list_display == [
        "action_checkbox",
        "id",
        "owner",
        "status",
        "selected_repository",
        "created_at",
        "ended_at",
        "event_count",
    ]


@pytest.mark.django_db
def test_conversation_list_event_count(superuser_client, alice_client):
    session_with_events(alice_client, 7)

    response = superuser_client.get(CONVERSATIONS_URL)

    assert '<td class="field-event_count">7</td>' in response.content.decode()


@pytest.mark.django_db
def test_conversation_filter_by_status(superuser_client, alice_client):
    live_id = create_session(alice_client)
    ended_id = create_session(alice_client)
    alice_client.delete(f"/sessions/{ended_id}")

    ended = superuser_client.get(CONVERSATIONS_URL, {"status__exact": "ended"})
    starting = superuser_client.get(CONVERSATIONS_URL, {"status__exact": "starting"})

    assert listed_conversations(ended) == {ended_id}
    assert listed_conversations(starting) == {live_id}


@pytest.mark.django_db
def test_conversation_filter_by_owner(superuser_client, alice, alice_client, bob_client):
    alice_id = create_session(alice_client)
    create_session(bob_client)

    response = superuser_client.get(CONVERSATIONS_URL, {"owner__id__exact": alice[0].pk})

    assert listed_conversations(response) == {alice_id}


@pytest.mark.django_db
@pytest.mark.parametrize("transform", [str, str.upper, lambda hex_id: f"  {hex_id}  "])
def test_conversation_search_by_id(superuser_client, alice_client, transform):
    session_id = create_session(alice_client)
    create_session(alice_client)

    response = superuser_client.get(CONVERSATIONS_URL, {"q": transform(session_id)})

    assert listed_conversations(response) == {session_id}


@pytest.mark.django_db
def test_conversation_search_by_repository(superuser_client, alice_client):
    session_id = create_session(alice_client, selected_repository="octocat/hello-world")
    create_session(alice_client, selected_repository="octocat/spoon-knife")

    response = superuser_client.get(CONVERSATIONS_URL, {"q": "hello-world"})

    assert listed_conversations(response) == {session_id}


@pytest.mark.django_db
def test_conversation_search_by_owner(superuser_client, alice_client, bob_client):
    create_session(alice_client)
    bob_id = create_session(bob_client)

    response = superuser_client.get(CONVERSATIONS_URL, {"q": "bob"})

    assert listed_conversations(response) == {bob_id}


@pytest.mark.django_db
def test_conversation_search_no_match(superuser_client, alice_client):
    create_session(alice_client)

    response = superuser_client.get(CONVERSATIONS_URL, {"q": "f" * 32})

    assert listed_conversations(response) == set()


@pytest.mark.django_db
def test_change_page_shows_events(superuser_client, alice_client):
    session_id = create_session(alice_client, initial_message="Show me in the admin")

    response = superuser_client.get(change_url(session_id))

    content = response.content.decode()
    assert response.status_code == 200
    assert "Show me in the admin" in content
    assert "user_message" in content
    assert "Events 1–2 of 2." in content


@pytest.mark.django_db
def test_change_page_read_only(superuser_client, alice_client):
    session_id = create_session(alice_client)

    response = superuser_client.get(change_url(session_id))

    assert response.context["adminform"].form.fields == {}


@pytest.mark.django_db
def test_change_page_post_changes_nothing(superuser_client, alice_client):
    session_id = create_session(alice_client)

    superuser_client.post(change_url(session_id), {"status": "ended", "title": "changed"})

    conversation = Conversation.objects.get(pk=session_id)
    assert conversation.status == "starting"
    assert conversation.title == ""


@pytest.mark.django_db
def test_change_page_first_events_page(superuser_client, alice_client):
    session_id = session_with_events(alice_client, 60)

    response = superuser_client.get(change_url(session_id))

    content = response.content.decode()
    assert "Events 1–50 of 60." in content
    assert "?events_page=2" in content


@pytest.mark.django_db
def test_change_page_second_events_page(superuser_client, alice_client):
    session_id = session_with_events(alice_client, 60)

    response = superuser_client.get(change_url(session_id), {"events_page": 2})

    content = response.content.decode()
    assert "Events 51–60 of 60." in content
    assert "message 60" in content
    assert "message 50<" not in content
    assert "?events_page=1" in content


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["0", "999", "last", "x"])
def test_change_page_odd_events_page(superuser_client, alice_client, page):
    session_id = session_with_events(alice_client, 60)

    response = superuser_client.get(change_url(session_id), {"events_page": page})

    assert response.status_code == 200


@pytest.mark.django_db
def test_change_page_escapes_content(superuser_client, alice_client):
    session_id = create_session(alice_client, initial_message="<script>alert(1)</script>")

    response = superuser_client.get(change_url(session_id))

    assert "<script>alert(1)</script>" not in response.content.decode()
    assert "&lt;script&gt;" in response.content.decode()


@pytest.mark.django_db
def test_end_sessions_action(superuser_client, alice_client, bob_client):
    first = create_session(alice_client)
    second = create_session(bob_client)
    untouched = create_session(alice_client)

    response = superuser_client.post(
        CONVERSATIONS_URL,
        {"action": "end_sessions", "_selected_action": [first, second]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Ended 2 session(s)." in response.content.decode()
    for session_id in [first, second]:
        conversation = Conversation.objects.get(pk=session_id)
        assert conversation.status == "ended"
        assert conversation.ended_at is not None
        last_event = conversation.events.order_by("-seq").first()
        assert last_event.type == "status"
        assert last_event.data == {"status": "ended"}
    assert Conversation.objects.get(pk=untouched).status == "starting"


@pytest.mark.django_db
def test_end_sessions_skips_ended(superuser_client, alice_client, ended_session):
    live_id = create_session(alice_client)

    response = superuser_client.post(
        CONVERSATIONS_URL,
        {"action": "end_sessions", "_selected_action": [ended_session, live_id]},
        follow=True,
    )

    assert "Ended 1 session(s)." in response.content.decode()
    assert Conversation.objects.get(pk=ended_session).last_event_seq == 3


@pytest.mark.django_db
def test_ended_by_admin_like_delete(superuser_client, alice_client, alice_session):
    superuser_client.post(
        CONVERSATIONS_URL, {"action": "end_sessions", "_selected_action": [alice_session]}
    )

    detail = alice_client.get(f"/sessions/{alice_session}")
    message = alice_client.post(
        f"/sessions/{alice_session}/messages", {"content": "hi"}, format="json"
    )

    assert detail.json()["status"] == "ended"
    assert message.status_code == 404


@pytest.mark.django_db
def test_end_sessions_action_label(superuser_client, alice_session):
    response = superuser_client.get(CONVERSATIONS_URL)

    assert "End selected sessions" in response.content.decode()


@pytest.mark.django_db
def test_conversation_add_disabled(superuser_client):
    response = superuser_client.get(f"{CONVERSATIONS_URL}add/")

    assert response.status_code == 403


@pytest.mark.django_db
def test_event_filter_by_conversation(superuser_client, alice_client):
    first = create_session(alice_client, initial_message="first")
    create_session(alice_client, initial_message="second")

    response = superuser_client.get(EVENTS_URL, {"conversation__id__exact": first})

    events = response.context["cl"].result_list
    assert {event.conversation_id.hex for event in events} == {first}
    assert len(events) == 2


@pytest.mark.django_db
def test_event_filter_by_type(superuser_client, alice_client):
    create_session(alice_client, initial_message="first")
    create_session(alice_client, initial_message="second")

    response = superuser_client.get(EVENTS_URL, {"type__exact": "user_message"})

    events = response.context["cl"].result_list
    assert {event.content for event in events} == {"first", "second"}


@pytest.mark.django_db
def test_event_change_page_read_only(superuser_client, alice_client):
    session_id = create_session(alice_client, initial_message="hello")
    event = Event.objects.get(conversation_id=session_id, seq=2)

    response = superuser_client.get(f"{EVENTS_URL}{event.pk}/change/")

    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}


@pytest.mark.django_db
def test_event_add_disabled(superuser_client):
    response = superuser_client.get(f"{EVENTS_URL}add/")

    assert response.status_code == 403


@pytest.mark.django_db
def test_api_keys_listed(superuser_client, alice, bob):
    response = superuser_client.get(API_KEYS_URL)

    content = response.content.decode()
    assert response.status_code == 200
    assert "alice key" in content
    assert "bob key" in content
    assert alice[1] not in content


@pytest.mark.django_db
def test_api_key_added_in_admin(superuser_client, alice):
    response = superuser_client.post(
        f"{API_KEYS_URL}add/",
        {"user": alice[0].pk, "name": "added in admin", "expiry_date_0": "", "expiry_date_1": ""},
        follow=True,
    )

    api_key = ApiKey.objects.get(name="added in admin")
    assert response.status_code == 200
    assert api_key.user == alice[0]
    assert ApiKey.objects.get_from_key(key_from_messages(response)) == api_key


@pytest.mark.django_db
def test_api_key_from_admin_works(superuser_client, alice):
    response = superuser_client.post(
        f"{API_KEYS_URL}add/",
        {"user": alice[0].pk, "name": "added in admin", "expiry_date_0": "", "expiry_date_1": ""},
        follow=True,
    )
    client = Client(headers={"Authorization": f"Bearer {key_from_messages(response)}"})

    listing = client.get("/sessions")

    assert listing.status_code == 200


@pytest.mark.django_db
def test_library_api_key_model_hidden(superuser_client):
    response = superuser_client.get("/admin/rest_framework_api_key/apikey/")

    assert response.status_code == 404


@pytest.mark.django_db
def test_admin_never_shows_github_token(superuser_client, alice_client):
    session_id = create_session(alice_client, github_token=GITHUB_TOKEN, initial_message="Hi")
    event = Event.objects.get(conversation_id=session_id, seq=2)

    pages = [
        CONVERSATIONS_URL,
        change_url(session_id),
        EVENTS_URL,
        f"{EVENTS_URL}{event.pk}/change/",
        f"{CONVERSATIONS_URL}?q={session_id}",
    ]
    for page in pages:
        response = superuser_client.get(page)
        assert response.status_code == 200
        assert GITHUB_TOKEN not in response.content.decode()


@pytest.mark.django_db
def test_admin_shows_github_token_flag(superuser_client, alice_client):
    session_id = create_session(alice_client, github_token=GITHUB_TOKEN)

    response = superuser_client.get(change_url(session_id))

    assert "Has github token" in response.content.decode()
