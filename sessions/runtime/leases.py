"""Relay leases: which API server process relays a live conversation's agent events.

A lease is two columns of the conversation row, `relay_owner` and `relay_lease_expires_at`,
changed by conditional UPDATEs, so PostgreSQL (or SQLite, for one machine) decides atomically who
wins a race. The database, not Redis, keeps leases because it is the record the relays write to,
so a Redis restart cannot hand every conversation to a second relay. Expiry is measured on the
database server's clock, so processes on machines with skewed clocks still agree.

The owner renews its leases every few seconds. When it dies, its leases expire and another
process claims them; the new relay backfills from the agent server, and the upstream event id
being unique per conversation keeps a brief overlap of two relays from storing anything twice.
"""
import logging
import os
import socket
import uuid
from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from sessions.models import Conversation, Status

logger = logging.getLogger(__name__)

# This process's name in relay_owner: host, process id, and a random part for reused ids.
PROCESS_IDENTITY = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def expires_in(seconds):
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


def claimable(dead_owners=()):
    """Return the filter of leases that no process holds or whose holder stopped renewing."""
    condition = (
        Q(relay_owner="")
        | Q(relay_lease_expires_at__isnull=True)
        | Q(relay_lease_expires_at__lt=Now())
    )
    if dead_owners:
        condition |= Q(relay_owner__in=list(dead_owners))
    return condition


def dead_local_owners():
    """Return lease owners on this host whose process has exited.

    Their leases can be taken at once instead of after expiry, so a restarted server resumes
    its relays without waiting.
    """
    prefix = f"{socket.gethostname()}:"
    owners = (
        live_with_agent()
        .filter(relay_owner__startswith=prefix)
        .exclude(relay_owner=PROCESS_IDENTITY)
        .values_list("relay_owner", flat=True)
        .distinct()
    )
    return [owner for owner in owners if not process_exists(owner.split(":")[1])]


def process_exists(pid_text):
    try:
        os.kill(int(pid_text), 0)
    except ValueError:
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        # The process exists but belongs to another user.
        return True
    return True


def live_with_agent():
    return Conversation.objects.exclude(status=Status.ENDED).exclude(upstream_id="")


def claim(conversation_id, seconds, owner=PROCESS_IDENTITY, dead_owners=()):
    """Take or renew the lease of one live conversation; return True if this owner holds it."""
    claimed = (
        live_with_agent()
        .filter(pk=conversation_id)
        .filter(claimable(dead_owners) | Q(relay_owner=owner))
        .update(relay_owner=owner, relay_lease_expires_at=expires_in(seconds))
    )
    if claimed:
        logger.debug("Lease of %s held by %s", conversation_id, owner)
    return bool(claimed)


def lease_fields(seconds, owner=PROCESS_IDENTITY):
    """Return the field values that give `owner` the lease of a conversation it is starting.

    Set in the same UPDATE as `upstream_id`: the conversation becomes claimable when that is
    set, and another process would otherwise take it over before its upstream exists.
    """
    return {"relay_owner": owner, "relay_lease_expires_at": expires_in(seconds)}


def renew(conversation_ids, seconds, owner=PROCESS_IDENTITY):
    """Extend this owner's leases; return the ids it still holds (ended ones are dropped)."""
    held = live_with_agent().filter(pk__in=list(conversation_ids), relay_owner=owner)
    held.update(relay_lease_expires_at=expires_in(seconds))
    return set(held.values_list("pk", flat=True))


def claim_orphans(seconds, limit, owner=PROCESS_IDENTITY, servers=None):
    """Claim up to `limit` live conversations whose lease is free or expired; return their ids.

    Sessions in error are skipped: their agent has stopped, or their relay stopped for good
    because the upstream conversation is gone (the relay sets that status). A message that
    reaches the agent of such a session claims its lease again. With `servers`, only sessions
    on those agent servers are claimed, because another process's embedded server is out of
    reach.
    """
    dead_owners = dead_local_owners() if owner == PROCESS_IDENTITY else []
    sessions = live_with_agent().exclude(status=Status.ERROR)
    if servers is not None:
        sessions = sessions.filter(agent_server_url__in=list(servers))
    candidates = list(
        sessions
        .filter(claimable(dead_owners))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    claimed = [pk for pk in candidates if claim(pk, seconds, owner, dead_owners)]
    if claimed:
        logger.info("Process %s took over the relays of %s session(s)", owner, len(claimed))
    return claimed


def release(conversation_id, owner=PROCESS_IDENTITY):
    Conversation.objects.filter(pk=conversation_id, relay_owner=owner).update(
        relay_owner="", relay_lease_expires_at=None
    )
