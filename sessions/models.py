import datetime
import re
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager


class Status(models.TextChoices):
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    FINISHED = "finished"
    PAUSED = "paused"
    WAITING_FOR_CONFIRMATION = "waiting_for_confirmation"
    ERROR = "error"
    STUCK = "stuck"
    ENDED = "ended"


class Source(models.TextChoices):
    AGENT = "agent"
    USER = "user"
    ENVIRONMENT = "environment"


HEX_ID_PATTERN = re.compile(r"[0-9a-fA-F]{32}")


def parse_conversation_id(value):
    """Return the UUID that a path names as 32 hex digits (dashes allowed), or None."""
    text = value.replace("-", "")
    # uuid.UUID() would also accept signs, underscores and spaces, which int() parses.
    if not HEX_ID_PATTERN.fullmatch(text):
        return None
    return uuid.UUID(hex=text)


class Conversation(models.Model):
    """One session: a conversation with one agent, owned by the user whose key created it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    status = models.CharField(
        max_length=32, choices=Status.choices, default=Status.STARTING, db_index=True
    )
    selected_repository = models.CharField(max_length=140, blank=True)
    title = models.CharField(max_length=200, blank=True)
    # Whether the creator gave a GitHub token. The token itself is never stored here.
    has_github_token = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Sequence number of the newest event. Events are numbered from 1 without gaps, so this is
    # also the number of events.
    last_event_seq = models.PositiveIntegerField(default=0)

    # Where the agent runs: the agent server, its id for this conversation, the workspace path.
    agent_server_url = models.CharField(max_length=500, blank=True)
    upstream_id = models.CharField(max_length=100, blank=True)
    workspace = models.CharField(max_length=1000, blank=True)

    # Which API server process relays this conversation's agent events, until when.
    relay_owner = models.CharField(max_length=200, blank=True)
    relay_lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.id.hex

    @property
    def is_ended(self):
        return self.status == Status.ENDED


class Event(models.Model):
    """One event of a conversation, numbered per conversation from 1 without gaps."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="events"
    )
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=40, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    content = models.TextField(blank=True)
    # Type-specific fields sent to clients beside id, type, content, source and timestamp.
    data = models.JSONField(default=dict, blank=True)
    # The agent server's event as received, for inspection in the admin.
    payload = models.JSONField(null=True, blank=True)
    # The agent server's event id: unique per conversation, so a replayed event is stored once.
    upstream_id = models.CharField(max_length=100, null=True, blank=True)
    timestamp = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="event_seq_unique"),
            models.UniqueConstraint(
                fields=["conversation", "upstream_id"], name="event_upstream_id_unique"
            ),
        ]

    def __str__(self):
        return f"{self.conversation_id.hex}#{self.seq} {self.type}"

    def to_wire(self):
        """Return the event as clients receive it, over REST and WebSocket alike."""
        wire = dict(self.data)
        wire.update(
            id=self.seq,
            type=self.type,
            content=self.content,
            source=self.source,
            timestamp=self.timestamp.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        )
        return wire


class ApiKey(AbstractAPIKey):
    """An API key of one user; only a hash of it is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )

    objects = BaseAPIKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
