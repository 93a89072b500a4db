"""Follow one conversation's event stream on the agent server and store what it sends.

A relay runs on the runtime's event loop. It subscribes to `/sockets/events/{id}`, maps each
upstream event to the API's catalogue, stores it with `record_event` and applies execution
status changes with `set_status`. It reconnects with back-off, resuming from the newest
upstream timestamp it has seen, and records one `error` event per outage of the agent server.
"""
import asyncio
import json
import logging
from urllib.parse import urlencode

import websockets

from sessions.runtime.db import run_orm
from sessions.runtime.event_mapping import (
    STATUS_DESCRIPTIONS,
    map_event,
    parse_upstream_timestamp,
)

logger = logging.getLogger(__name__)

MAX_RECONNECT_DELAY_SECONDS = 30
OPEN_TIMEOUT_SECONDS = 10
# Seconds without a frame after which a connection's replay counts as over. A live event also
# ends it.
REPLAY_QUIET_SECONDS = 0.5

# Close codes of the agent server's event socket (openhands-agent-server 1.58.2).
CLOSE_AUTH_FAILED = 4001
CLOSE_NOT_FOUND = 4004


class RelayStopped(Exception):
    """The relay cannot continue: the conversation is gone or the key is rejected."""


class EventRelay:
    """The relay of one conversation; `run()` returns only when stopped or unrecoverable."""

    def __init__(self, conversation_id, upstream_id, server, store, llm, apply_first_snapshot=True):
        """Create a relay.

        `server` is an async callable returning (base_url, api_key) of the conversation's agent
        server, asked again at each connection because an embedded server changes port when it
        restarts. `store` provides the storage calls (see `RelayStore`). Unless
        `apply_first_snapshot`, the status in the first connection's state snapshot is not
        applied, because a session that is still starting sets its own status.
        """
        self.conversation_id = conversation_id
        self.upstream_id = upstream_id
        self._server = server
        self._store = store
        self._llm = llm
        self._apply_snapshot = apply_first_snapshot
        # True from the delivery of a message until the agent server reports running, while a
        # snapshot taken before the delivery would report the previous turn's end as current.
        self._run_expected = False
        self._seen = set()
        # The newest upstream timestamp seen, as the server wrote it (naive, its local time).
        self._cursor = None
        self._snapshot_time = None
        # The status of the latest snapshot, until the replay that follows it has been stored.
        self._snapshot_status = None
        self._stopping = False
        self._outage_reported = False
        # The agent server of the latest connection attempt, named when it cannot be reached.
        self._base_url = None

    def stop(self):
        self._stopping = True

    def expect_run(self):
        """Note that a message is being delivered, so the agent is about to run."""
        self._run_expected = True

    async def run(self):
        if self._cursor is None:
            self._cursor = await self._store.last_upstream_timestamp(self.conversation_id)

        delay = 1
        while not self._stopping:
            try:
                await self._follow()
                delay = 1
            except RelayStopped as error:
                logger.warning("Relay of conversation %s stopped: %s", self.conversation_id, error)
                # The error status keeps the lease keepers from starting this relay again and
                # again; set_status leaves an ended session as it is.
                await self._store.set_status(
                    self.conversation_id, "error", f"The agent's events can no longer be followed: {error}."
                )
                return
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as error:
                await self._report_outage(error)
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY_SECONDS)

    async def _follow(self):
        base_url, api_key = await self._server()
        self._base_url = base_url
        url = self._socket_url(base_url)

        async with websockets.connect(
            url, open_timeout=OPEN_TIMEOUT_SECONDS, max_size=None, ping_interval=20
        ) as socket:
            # First-frame authentication keeps the key out of URLs and access logs.
            await socket.send(json.dumps({"type": "auth", "session_api_key": api_key}))
            logger.info("Relay of conversation %s connected to %s", self.conversation_id, base_url)
            # A snapshot that an earlier connection left unapplied is superseded by this one's.
            self._snapshot_status = None
            try:
                while True:
                    try:
                        frame = await self._receive(socket)
                    except websockets.ConnectionClosedOK:
                        break
                    if self._stopping:
                        return
                    await self._handle_frame(frame)
            except websockets.ConnectionClosed as closed:
                self._raise_for_close(closed)
                raise
            # The server closed the socket with a normal code, or it ended without a code.
            self._raise_for_close_code(socket.close_code, socket.close_reason)

    async def _receive(self, socket):
        """Return the next frame, applying the snapshot's status once the replay goes quiet."""
        while self._snapshot_status is not None:
            try:
                # websockets documents that cancelling recv() of its asyncio API loses no frame.
                return await asyncio.wait_for(socket.recv(), REPLAY_QUIET_SECONDS)
            except TimeoutError:
                await self._apply_snapshot_status()
        return await socket.recv()

    def _raise_for_close(self, closed):
        if closed.rcvd is not None:
            self._raise_for_close_code(closed.rcvd.code, closed.rcvd.reason)

    def _raise_for_close_code(self, code, reason):
        if code == CLOSE_NOT_FOUND:
            raise RelayStopped(f"the agent server has no conversation {self.upstream_id}")
        if code == CLOSE_AUTH_FAILED:
            raise RelayStopped(f"the agent server rejected the session API key ({reason})")

    def _socket_url(self, base_url):
        ws_base = "ws" + base_url.removeprefix("http")
        if self._cursor:
            query = {"resend_mode": "since", "after_timestamp": self._cursor}
        else:
            query = {"resend_mode": "all"}
        return f"{ws_base}/sockets/events/{self.upstream_id}?{urlencode(query)}"

    async def _handle_frame(self, frame):
        try:
            upstream = json.loads(frame)
        except ValueError:
            logger.warning("Relay of conversation %s got a frame that is not JSON", self.conversation_id)
            return
        if not isinstance(upstream, dict):
            return

        if self._outage_reported:
            self._outage_reported = False
            logger.info("Relay of conversation %s reconnected after an outage", self.conversation_id)

        if upstream.get("key") == "full_state":
            await self._handle_snapshot(upstream)
            return
        if self._snapshot_status is not None and not self._is_replayed(upstream):
            await self._apply_snapshot_status()

        upstream_id = upstream.get("id")
        if not upstream_id or upstream_id in self._seen:
            return
        self._seen.add(upstream_id)
        self._advance_cursor(upstream.get("timestamp"))

        for event in map_event(upstream, self._llm):
            try:
                if event.type == "status":
                    await self._apply_status_event(event)
                else:
                    await self._store.record(self.conversation_id, event)
            except Exception:
                # NOTE: the event is lost for this process; a relay started later replays it
                # only if it is newer than the newest stored upstream event.
                logger.exception(
                    "Could not store event %s of conversation %s", event.upstream_id, self.conversation_id
                )

    async def _handle_snapshot(self, upstream):
        # The state snapshot is the first frame of every connection, sent before replayed
        # events, so its time divides replayed status changes from live ones.
        self._snapshot_time = parse_upstream_timestamp(upstream.get("timestamp"))
        status = (upstream.get("value") or {}).get("execution_status")
        if not self._apply_snapshot:
            self._apply_snapshot = True
            return
        # Applied after the replayed events, so that a relay taking over a finished turn stores
        # its output before the status that ends it.
        self._snapshot_status = status

    async def _apply_snapshot_status(self):
        status, self._snapshot_status = self._snapshot_status, None
        if status == "idle" or (self._run_expected and status not in ("running", "error")):
            return
        if status in STATUS_DESCRIPTIONS:
            await self._store.set_status(self.conversation_id, status, STATUS_DESCRIPTIONS[status])

    def _is_replayed(self, upstream):
        timestamp = parse_upstream_timestamp(upstream.get("timestamp"))
        return bool(self._snapshot_time and timestamp and timestamp < self._snapshot_time)

    async def _apply_status_event(self, event):
        # A replayed status change is older than the snapshot, which already gave the status.
        if self._snapshot_time and event.timestamp and event.timestamp < self._snapshot_time:
            return
        # The agent server passes through "idle" between accepting a new message and running
        # it. The API set "running" when it accepted the message, and passing the transient
        # idle on would tell clients (has_more false) that the turn is over before it began.
        if event.data["status"] == "idle":
            return
        self._run_expected = False
        await self._store.set_status(self.conversation_id, event.data["status"], event.content)

    def _advance_cursor(self, timestamp):
        if not isinstance(timestamp, str):
            return
        if self._cursor is None or parse_upstream_timestamp(timestamp) > parse_upstream_timestamp(self._cursor):
            self._cursor = timestamp

    async def _report_outage(self, error):
        if self._stopping:
            return
        logger.warning(
            "Relay of conversation %s lost the agent server: %s: %s",
            self.conversation_id, type(error).__name__, error,
        )
        if self._outage_reported:
            return
        self._outage_reported = True
        base_url = await self._server_url_for_message()
        await self._store.record_error(
            self.conversation_id,
            f"The agent server at {base_url} could not be reached ({type(error).__name__}). "
            f"The API keeps reconnecting; events will resume when it is back.",
            code="AgentServerUnreachable",
        )

    async def _server_url_for_message(self):
        # Asking `server` again would wait for a restarting embedded server to be ready.
        if self._base_url:
            return self._base_url
        try:
            base_url, _ = await asyncio.wait_for(self._server(), timeout=1)
        except Exception:
            return "(unknown)"
        return base_url


class RelayStore:
    """The database calls of a relay; tests replace it with an in-memory store."""

    async def record(self, conversation_id, event):
        from sessions.events import record_event

        await run_orm(record_event, conversation_id, **event.record_kwargs())

    async def record_error(self, conversation_id, message, code):
        from sessions.events import record_event

        await run_orm(
            record_event, conversation_id, type="error", source="environment", content=message, data={"code": code}
        )

    async def set_status(self, conversation_id, status, detail):
        from sessions.services import set_status

        await run_orm(set_status, conversation_id, status, detail)

    async def last_upstream_timestamp(self, conversation_id):
        return await run_orm(_last_upstream_timestamp, conversation_id)


def _last_upstream_timestamp(conversation_id):
    from sessions.models import Event

    event = (
        Event.objects.filter(
            conversation_id=conversation_id, upstream_id__isnull=False, payload__isnull=False
        )
        .order_by("-seq")
        .only("payload")
        .first()
    )
    if event is None or not isinstance(event.payload, dict):
        return None
    return event.payload.get("timestamp")
