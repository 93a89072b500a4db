"""Relay leases decided by the database."""
import time

import pytest

from sessions.models import Conversation, Status
from sessions.runtime import leases

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(alice):
    return Conversation.objects.create(owner=alice[0], status=Status.IDLE, upstream_id="up-1")


def test_claim_free_lease(live):
    assert leases.claim(live.pk, 30, owner="a")


def test_claim_held_lease_fails(live):
    leases.claim(live.pk, 30, owner="a")

    assert not leases.claim(live.pk, 30, owner="b")


def test_owner_renews_own_lease(live):
    leases.claim(live.pk, 30, owner="a")

    assert leases.claim(live.pk, 30, owner="a")


def test_expired_lease_taken_over(live):
    leases.claim(live.pk, 1, owner="a")
    time.sleep(1.2)

    assert leases.claim(live.pk, 30, owner="b")
    assert leases.renew([live.pk], 30, owner="a") == set()


def test_ended_session_not_claimed(live):
    Conversation.objects.filter(pk=live.pk).update(status=Status.ENDED)

    assert not leases.claim(live.pk, 30, owner="a")


def test_session_without_agent_not_claimed(alice):
    conversation = Conversation.objects.create(owner=alice[0])

    assert not leases.claim(conversation.pk, 30, owner="a")


def test_renew_keeps_held_leases(live):
    leases.claim(live.pk, 30, owner="a")

    held = leases.renew([live.pk], 30, owner="a")

    assert held == {live.pk}


def test_renew_drops_ended_sessions(live):
    leases.claim(live.pk, 30, owner="a")
    Conversation.objects.filter(pk=live.pk).update(status=Status.ENDED)

    assert leases.renew([live.pk], 30, owner="a") == set()


def test_claim_orphans_takes_free_ones(live, alice):
    held = Conversation.objects.create(owner=alice[0], status=Status.IDLE, upstream_id="up-2")
    leases.claim(held.pk, 30, owner="a")

    claimed = leases.claim_orphans(30, limit=10, owner="b")

    assert claimed == [live.pk]


def test_release_frees_lease(live):
    leases.claim(live.pk, 30, owner="a")

    leases.release(live.pk, owner="a")

    assert leases.claim(live.pk, 30, owner="b")


def test_started_session_not_orphaned(alice):
    conversation = Conversation.objects.create(owner=alice[0], status=Status.STARTING)
    Conversation.objects.filter(pk=conversation.pk).update(
        upstream_id="up-3", **leases.lease_fields(30, owner="a")
    )

    claimed = leases.claim_orphans(30, limit=10, owner="b")

    assert claimed == []
    assert leases.claim(conversation.pk, 30, owner="a")


def test_claim_orphans_skips_error_sessions(live):
    Conversation.objects.filter(pk=live.pk).update(status=Status.ERROR)

    claimed = leases.claim_orphans(30, limit=10, owner="b")

    assert claimed == []
    assert leases.claim(live.pk, 30, owner="b")


def test_claim_orphans_only_reachable_servers(live, alice):
    Conversation.objects.filter(pk=live.pk).update(agent_server_url="http://127.0.0.1:1")
    elsewhere = Conversation.objects.create(
        owner=alice[0], status=Status.IDLE, upstream_id="up-3", agent_server_url="embedded:other"
    )

    claimed = leases.claim_orphans(30, limit=10, owner="b", servers=["http://127.0.0.1:1"])

    assert claimed == [live.pk]
    assert elsewhere.pk not in claimed
