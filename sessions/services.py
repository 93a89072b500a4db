"""Session operations: creation, messages, status changes, interruption and the end.

REST views, the WebSocket consumer, the admin and the agent runtime all go through these
functions, so each change has one implementation.
"""
import logging

from django.db import transaction
from django.utils import timezone

from sessions.events import notify_ended, record_event
from sessions.models import Conversation, Source, Status
from sessions.runtime import RuntimeUnavailable, get_runtime

logger = logging.getLogger(__name__)

TITLE_LENGTH = 80


class SessionEnded(Exception):
    """The session has ended and accepts nothing more."""


def create_session(owner, *, selected_repository="", github_token="", initial_message=None):
    """Create a session and start its agent; raise RuntimeUnavailable if no agent can run."""
    runtime = get_runtime()
    runtime.check_available()

    conversation = Conversation.objects.create(
        owner=owner,
        selected_repository=selected_repository,
        has_github_token=bool(github_token),
        title=title_from_message(initial_message),
    )
    logger.info("Session %s created for user %s", conversation.id, owner.pk)

    record_status_event(conversation.id, Status.STARTING, "Session created; the agent is starting.")
    if initial_message:
        record_user_message(conversation.id, initial_message)

    try:
        runtime.start_session(conversation, github_token, initial_message)
    except RuntimeUnavailable:
        # The client gets 503 and will retry: a session that never got an agent is noise.
        logger.warning("Session %s removed: no agent could be started", conversation.id)
        conversation.delete()
        raise
    return conversation


def title_from_message(message):
    if not message:
        return ""
    first_line = message.strip().splitlines()[0]
    if len(first_line) <= TITLE_LENGTH:
        return first_line
    return first_line[: TITLE_LENGTH - 1] + "…"


def send_message(conversation, text):
    """Store the user's message as an event and hand it to the agent."""
    # The caller's copy may be older than a change through another request or process, and
    # the runtime reads the status from before this message (to retry a session in error).
    conversation.refresh_from_db(fields=["status"])
    if conversation.is_ended:
        raise SessionEnded()

    runtime = get_runtime()
    if runtime.runs_agents:
        # Set before the message is stored, so its frame already has has_more set to true.
        set_status(conversation.id, Status.RUNNING, "The agent is working on a new message.")
    event = record_user_message(conversation.id, text)
    runtime.send_message(conversation, text)
    return event


def record_user_message(conversation_id, text):
    return record_event(conversation_id, type="user_message", source=Source.USER, content=text)


def interrupt(conversation):
    """Stop the agent's current turn; the session stays open."""
    if conversation.is_ended:
        raise SessionEnded()

    logger.info("Interrupting the agent of session %s", conversation.id)
    get_runtime().interrupt(conversation)


def set_status(conversation_id, status, detail=""):
    """Set a live session's status and record a status event; return False if nothing changed."""
    with transaction.atomic():
        changed = (
            Conversation.objects.filter(pk=conversation_id)
            .exclude(status__in=[status, Status.ENDED])
            .update(status=status, updated_at=timezone.now())
        )
        if not changed:
            return False
        record_status_event(conversation_id, status, detail)

    logger.info("Session %s is now %s", conversation_id, status)
    return True


def record_status_event(conversation_id, status, detail=""):
    return record_event(
        conversation_id,
        type="status",
        source=Source.ENVIRONMENT,
        content=detail or f"The session is {status}.",
        data={"status": str(status)},
    )


def end_session(conversation):
    """End a session: keep it and its events, stop its agent, close its sockets.

    Returns False if the session had already ended.
    """
    with transaction.atomic():
        changed = (
            Conversation.objects.filter(pk=conversation.pk)
            .exclude(status=Status.ENDED)
            .update(status=Status.ENDED, ended_at=timezone.now(), updated_at=timezone.now())
        )
        if not changed:
            return False
        event = record_status_event(conversation.pk, Status.ENDED, "Session ended.")

    logger.info("Session %s ended", conversation.pk)
    conversation.refresh_from_db()

    try:
        get_runtime().end_session(conversation)
    except Exception:
        # The session has ended for the client either way; the agent server cleans up idle
        # conversations itself.
        logger.exception("Could not stop the agent of ended session %s", conversation.pk)

    notify_ended(conversation.pk, event.seq)
    return True
