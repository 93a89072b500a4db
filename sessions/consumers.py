"""The WebSocket half of the protocol, at /ws/{conversation_id}.

Server frames are `{"events": [...], "has_more": bool}`. On connect the consumer joins the
conversation's group first and reads stored events second, so no event falls between the replay
and the live stream. Live events it has already sent are dropped, and a gap in the live stream is
filled from the database.
"""
import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from sessions import services
from sessions.events import group_name, is_working
from sessions.middleware import PROTOCOL_NAME, header_value
from sessions.models import Conversation, parse_conversation_id

logger = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_FAILURE = 4000
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN_ORIGIN = 4003
CLOSE_NOT_FOUND = 4004

# Seconds between attempts to receive from a channel layer that failed (Redis down), doubling.
LAYER_RETRY_FIRST_SECONDS = 0.5
LAYER_RETRY_MAX_SECONDS = 10

# Maximum events in one frame, and how long a live event may wait for others to share its frame.
MAX_EVENTS_PER_FRAME = 100
BATCH_DELAY_SECONDS = 0.02

COMMANDS = ("message", "interrupt")


class BadInput(Exception):
    """A client frame that cannot be acted on; the message goes back in an error frame."""


class ConversationConsumer(AsyncWebsocketConsumer):
    conversation = None
    last_sent_seq = 0
    pending = None
    pending_working = False
    flush_handle = None
    send_lock = None
    # Set once the socket is accepted for a session; until the group is joined, each receive
    # from the layer tries to join it.
    wants_group = False
    in_group = False

    # Channels assigns the layer's receive function to `channel_receive` before dispatching. The
    # setter keeps it, and the consumer waits on a version that survives a Redis restart.
    @property
    def channel_receive(self):
        return self.receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive):
        self.layer_receive = receive

    async def receive_from_layer(self):
        """Wait for the next channel-layer message, riding out failures of the layer."""
        delay = LAYER_RETRY_FIRST_SECONDS
        while True:
            if self.wants_group and not self.in_group:
                await self.rejoin_group()
            try:
                return await self.layer_receive()
            except Exception as error:
                session = self.conversation.id if self.conversation else None
                logger.warning(
                    "Channel layer failed for session %s (%s); retrying in %s s", session, error, delay
                )
                # A restarted Redis has forgotten group memberships.
                self.in_group = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAYER_RETRY_MAX_SECONDS)

    async def join_group(self):
        """Join the session's group; return False if the channel layer failed."""
        try:
            await self.channel_layer.group_add(group_name(self.conversation.id), self.channel_name)
        except Exception as error:
            logger.debug("WebSocket of session %s could not join its group: %s", self.conversation.id, error)
            return False
        self.in_group = True
        return True

    async def rejoin_group(self):
        # Events sent while the socket was out of its group are in the database only.
        if await self.join_group():
            logger.info("WebSocket of session %s rejoined its group", self.conversation.id)
            await self.send_stored_events(final=False)

    async def connect(self):
        self.pending = []
        self.send_lock = asyncio.Lock()
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]

        # Accept before closing: a close before the accept reaches the client as HTTP 403.
        subprotocols = self.scope.get("subprotocols") or []
        await self.accept(PROTOCOL_NAME if PROTOCOL_NAME in subprotocols else None)

        if not self.origin_allowed():
            logger.info("WebSocket for %s rejected: origin %s not allowed", conversation_id, self.origin())
            await self.close(CLOSE_FORBIDDEN_ORIGIN, "Origin not allowed")
            return
        if self.scope.get("auth_error"):
            logger.info("WebSocket for %s rejected: %s", conversation_id, self.scope["auth_error"])
            await self.close(CLOSE_UNAUTHORIZED, "Missing or invalid API key")
            return

        self.conversation = await self.find_live_conversation(conversation_id)
        if self.conversation is None:
            logger.info("WebSocket for %s rejected: no such live session for this key", conversation_id)
            await self.close(CLOSE_NOT_FOUND, "Session not found or ended")
            return

        try:
            after = self.parse_after()
        except BadInput as error:
            logger.info("WebSocket for %s rejected: %s", self.conversation.id, error)
            await self.send_error(str(error))
            await self.close(CLOSE_FAILURE)
            return

        # Join first, read second: live events that arrive meanwhile wait in the channel and are
        # dropped later if the replay already contained them.
        self.last_sent_seq = after
        self.wants_group = True
        if await self.join_group():
            logger.debug("WebSocket joined session %s after event %s", self.conversation.id, after)
        else:
            # The stored events still go out, and the receive loop joins the group after the
            # layer's next failure. NOTE: if the layer recovered before the receive failed, the
            # socket stays out of its group until the layer fails again.
            logger.warning(
                "WebSocket of session %s could not join its group: the channel layer failed",
                self.conversation.id,
            )
        await self.send_stored_events(final=False)

    async def disconnect(self, code):
        if self.flush_handle is not None:
            self.flush_handle.cancel()
        if self.wants_group:
            try:
                await self.channel_layer.group_discard(group_name(self.conversation.id), self.channel_name)
            except Exception as error:
                # Redis drops the membership itself after the group expiry.
                logger.debug("WebSocket of session %s could not leave its group: %s", self.conversation.id, error)
        if self.conversation is not None:
            logger.debug("WebSocket left session %s with code %s", self.conversation.id, code)

    # Connection checks

    def origin(self):
        return header_value(self.scope, "origin")

    def origin_allowed(self):
        origin = self.origin()
        # Scripts and SDKs send no Origin; browsers always do.
        return origin is None or origin in settings.WEBSOCKET_ALLOWED_ORIGINS

    @database_sync_to_async
    def find_live_conversation(self, conversation_id):
        pk = parse_conversation_id(conversation_id)
        if pk is None:
            return None
        return (
            Conversation.objects.filter(pk=pk, owner=self.scope["user"])
            .exclude(status="ended")
            .first()
        )

    def parse_after(self):
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        values = query.get("after", ["0"])
        try:
            after = int(values[-1])
        except ValueError:
            raise BadInput(f"Invalid 'after' {values[-1]!r}: it must be a whole number >= 0.") from None
        if after < 0:
            raise BadInput(f"Invalid 'after' {after}: it must be a whole number >= 0.")
        return after

    # Server to client

    @database_sync_to_async
    def load_events(self, after, limit):
        conversation = Conversation.objects.only("status").get(pk=self.conversation.id)
        rows = list(conversation.events.filter(seq__gt=after).order_by("seq")[: limit + 1])
        return [event.to_wire() for event in rows[:limit]], len(rows) > limit, conversation.status

    async def send_stored_events(self, final):
        """Send every stored event after the last one sent, in frames of bounded size."""
        async with self.send_lock:
            while True:
                events, more_stored, status = await self.load_events(
                    self.last_sent_seq, MAX_EVENTS_PER_FRAME
                )
                if not events:
                    return
                working = is_working(status) and not final
                await self.send_frame(events, has_more=more_stored or working)
                if not more_stored:
                    return

    async def send_frame(self, events, has_more):
        await self.send(text_data=json.dumps({"events": events, "has_more": has_more}))
        self.last_sent_seq = events[-1]["id"]

    async def conversation_events(self, message):
        """Called for each event notification from the conversation's group."""
        self.pending.extend(message["events"])
        self.pending_working = message["working"]
        if self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(
                BATCH_DELAY_SECONDS, lambda: asyncio.ensure_future(self.flush())
            )

    async def flush(self):
        self.flush_handle = None
        events, self.pending = self.pending, []
        try:
            await self.send_live_events(events, self.pending_working)
        except Exception:
            logger.exception("Could not send events of session %s", self.conversation.id)
            await self.close(CLOSE_FAILURE)

    async def send_live_events(self, events, working):
        fresh = [event for event in events if event["id"] > self.last_sent_seq]
        if not fresh:
            return
        if fresh[0]["id"] != self.last_sent_seq + 1 or not is_consecutive(fresh):
            # A notification was lost or reordered: the database has the full sequence.
            logger.info("Filling a gap in session %s after event %s", self.conversation.id, self.last_sent_seq)
            await self.send_stored_events(final=False)
            return

        async with self.send_lock:
            for start in range(0, len(fresh), MAX_EVENTS_PER_FRAME):
                chunk = fresh[start : start + MAX_EVENTS_PER_FRAME]
                more_chunks = start + MAX_EVENTS_PER_FRAME < len(fresh)
                await self.send_frame(chunk, has_more=more_chunks or working)

    async def conversation_ended(self, message):
        """Called when the session ends: send what is left, then close normally."""
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        self.pending = []
        await self.send_stored_events(final=True)
        logger.debug("Closing WebSocket of ended session %s", self.conversation.id)
        await self.close(CLOSE_NORMAL)

    async def send_error(self, message):
        await self.send(text_data=json.dumps({"error": True, "message": message}))

    # Client to server

    async def receive(self, text_data=None, bytes_data=None):
        try:
            await self.handle_frame(text_data, bytes_data)
        except BadInput as error:
            await self.send_error(str(error))
        except services.SessionEnded:
            await self.send_error(f"Session {self.conversation.id.hex} has ended.")
        except Exception:
            logger.exception("Failed to handle a frame of session %s", self.conversation.id)
            await self.send_error("Internal error while handling the frame; it was logged. Try again.")

    async def handle_frame(self, text_data, bytes_data):
        if text_data is None:
            raise BadInput("Binary frames are not supported: send text frames (JSON or plain text).")
        size = len(text_data.encode())
        limit = settings.WEBSOCKET_MAX_FRAME_BYTES
        if size > limit:
            raise BadInput(f"Frame too large: {size} bytes, the limit is {limit} bytes.")

        command = parse_command(text_data)
        if command["type"] == "interrupt":
            await database_sync_to_async(services.interrupt)(self.conversation)
            return

        content = command["content"]
        if not content.strip():
            raise BadInput("Message is blank: send some text.")
        if len(content) > settings.MAX_MESSAGE_CHARS:
            raise BadInput(
                f"Message too long: {len(content)} characters, the limit is "
                f"{settings.MAX_MESSAGE_CHARS}."
            )
        await database_sync_to_async(services.send_message)(self.conversation, content)


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Closes WebSockets on paths other than /ws/{conversation_id} with 4004."""

    async def connect(self):
        await self.accept()
        logger.info("WebSocket on unknown path %s closed", self.scope.get("path"))
        await self.close(CLOSE_NOT_FOUND)


def parse_command(text):
    """Return `{"type": ..., ...}` for a client text frame; raise BadInput if it is invalid.

    A JSON string is a message, a JSON object is a command, and any other text is the message
    text unchanged.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadInput("Frame is JSON nested too deeply.") from None
    except ValueError:
        return {"type": "message", "content": text}

    if isinstance(value, str):
        return {"type": "message", "content": value}
    if not isinstance(value, dict):
        return {"type": "message", "content": text}

    if "type" not in value:
        raise BadInput(f"Missing field 'type' in a command: known types are {', '.join(COMMANDS)}.")
    command_type = value["type"]
    if command_type not in COMMANDS:
        raise BadInput(
            f"Unknown command type {command_type!r}: known types are {', '.join(COMMANDS)}."
        )
    if command_type == "message" and "content" not in value:
        raise BadInput("Missing field 'content' in a message command.")
    if command_type == "message" and not isinstance(value["content"], str):
        raise BadInput("Field 'content' of a message command must be a string.")
    return value


def is_consecutive(events):
    return all(later["id"] == earlier["id"] + 1 for earlier, later in zip(events, events[1:]))
