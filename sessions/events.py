"""The event seam: every event of a conversation is stored and fanned out through here.

The database is the record. The channel layer only notifies connected sockets, so a notification
lost (Redis down, a socket too slow) costs nothing that a reconnect with `after` cannot recover.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.utils import timezone

from sessions.models import Conversation, Event, Status

logger = logging.getLogger(__name__)

# Statuses in which the agent will send more events without further input from the user.
WORKING_STATUSES = frozenset({Status.STARTING, Status.RUNNING})

# Channel-layer message types, handled by the consumer methods of the same name with "_".
EVENTS_MESSAGE = "conversation.events"
ENDED_MESSAGE = "conversation.ended"


def group_name(conversation_id):
    return f"conversation.{conversation_id.hex}"


def is_working(status):
    return status in WORKING_STATUSES


def record_event(
    conversation_id,
    *,
    type,
    source,
    content="",
    data=None,
    upstream_id=None,
    payload=None,
    timestamp=None,
):
    """Store an event with the next sequence number, then notify the conversation's sockets.

    Returns the stored Event, or None when an event with this `upstream_id` is already stored,
    so callers may replay upstream events without checking first.
    """
    try:
        with transaction.atomic():
            # The row lock serializes writers of one conversation (PostgreSQL); SQLite takes the
            # database write lock at BEGIN because transactions are IMMEDIATE.
            conversation = (
                Conversation.objects.select_for_update()
                .only("id", "status", "last_event_seq")
                .get(pk=conversation_id)
            )
            if upstream_id and conversation.events.filter(upstream_id=upstream_id).exists():
                return None

            seq = conversation.last_event_seq + 1
            event = Event.objects.create(
                conversation_id=conversation_id,
                seq=seq,
                type=type,
                source=source,
                content=content or "",
                data=data or {},
                upstream_id=upstream_id or None,
                payload=payload,
                timestamp=timestamp or timezone.now(),
            )
            Conversation.objects.filter(pk=conversation_id).update(
                last_event_seq=seq, updated_at=timezone.now()
            )
    except IntegrityError:
        if upstream_id:
            logger.debug("Event %s of %s was stored by another writer", upstream_id, conversation_id)
            return None
        raise

    # Inside a caller's transaction, notify only once the event is really stored.
    wire_event = event.to_wire()
    working = is_working(conversation.status)
    transaction.on_commit(lambda: notify_events(conversation_id, [wire_event], working))
    return event


def notify_events(conversation_id, wire_events, working):
    send_to_group(
        conversation_id,
        {"type": EVENTS_MESSAGE, "events": wire_events, "working": working},
    )


def notify_ended(conversation_id, last_seq):
    send_to_group(conversation_id, {"type": ENDED_MESSAGE, "last_seq": last_seq})


def send_to_group(conversation_id, message):
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(conversation_id), message)
    except Exception as error:
        # Sockets catch up from the database when the layer is back or on their next event.
        logger.warning("Could not notify the sockets of conversation %s: %s", conversation_id, error)
