"""The runtime that runs each session's agent on an OpenHands agent server.

Its public methods are synchronous and called from request threads. They hand the work to
one background event loop, which owns the HTTP clients, the relays and the session start-up.
"""
import asyncio
import atexit
import hashlib
import logging

import httpx
from django.conf import settings

from sessions.runtime import RuntimeUnavailable, leases
from sessions.runtime.agent_spec import describe_llm, missing_llm_settings, start_conversation_body
from sessions.runtime.background_loop import BackgroundLoop
from sessions.runtime.client import AgentServerClient, AgentServerError
from sessions.runtime.db import run_orm
from sessions.runtime.relay import EventRelay, RelayStore
from sessions.runtime.repository import CloneFailed, clone_repository
from sessions.runtime.supervisor import READY_TIMEOUT_SECONDS, EmbeddedAgentServer

logger = logging.getLogger(__name__)

# The value of Conversation.agent_server_url for the supervised server, whose port changes
# when it restarts.
EMBEDDED_PREFIX = "embedded:"

# Most orphaned conversations one process takes over per lease round, so that after a crash
# the survivors share the work instead of the first one taking everything.
ORPHANS_PER_ROUND = 20

# How long a request thread waits for a call to the agent server.
CALL_TIMEOUT_SECONDS = 15
# Parent directory of the workspaces on an external agent server's host.
EXTERNAL_WORKSPACE_ROOT = "/workspace/openhands-api"


class AgentServerRuntime:
    runs_agents = True

    def __init__(self):
        self._loop = BackgroundLoop()
        self._store = RelayStore()
        self._embedded = None
        if not settings.OPENHANDS_AGENT_SERVER_URL:
            self._embedded = EmbeddedAgentServer(
                settings.DATA_DIR, settings.OPENHANDS_AGENT_SERVER_EXECUTABLE
            )
        # The following are used on the event loop only.
        self._clients = {}
        self._relays = {}
        self._relay_tasks = {}
        self._locks = {}
        # GitHub tokens of sessions whose clone has not succeeded yet, kept in memory only so
        # that a retry can clone again.
        self._pending_tokens = {}
        # Sessions whose start-up failed in this process. A later message retries the start-up
        # when the session is in error, and also when a message sent meanwhile replaced that
        # status with running.
        self._failed_startups = set()
        self._lease_keeper = None

    # Synchronous interface for sessions.services.

    def check_available(self):
        missing = missing_llm_settings()
        if missing:
            raise RuntimeUnavailable(
                f"No LLM is configured: set {', '.join(missing)} (a LiteLLM model name such as "
                f"openai/gpt-4o), and LLM_API_KEY and LLM_BASE_URL as the provider needs."
            )

        if self._embedded is not None:
            self._embedded.start()
            if not self._embedded.is_ready() and self._embedded.last_error:
                raise RuntimeUnavailable(
                    f"The embedded agent server is not running: {self._embedded.last_error} "
                    f"See {self._embedded.log_path}."
                )
            return
        self._pick_external_server()

    def start_session(self, conversation, github_token, initial_message):
        server_url = self._embedded_name() if self._embedded is not None else self._pick_external_server()
        # The upstream conversation gets the session's id, so it is known before it exists.
        upstream_id = str(conversation.id)
        workspace = self._workspace_for(conversation)

        type(conversation).objects.filter(pk=conversation.pk).update(
            agent_server_url=server_url, upstream_id=upstream_id, workspace=workspace,
            **leases.lease_fields(settings.RELAY_LEASE_SECONDS),
        )
        conversation.agent_server_url = server_url
        conversation.upstream_id = upstream_id
        conversation.workspace = workspace

        if github_token:
            self._loop.submit(self._remember_token(conversation.id, github_token))
        self._loop.submit(self._schedule_startup(
            conversation.id, server_url, upstream_id, workspace,
            conversation.selected_repository, initial_message,
        ))
        logger.info("Session %s is starting on %s", conversation.id, server_url)

    def send_message(self, conversation, text):
        # `conversation.status` is the status from before this message: services set
        # "running" in the database only.
        self._loop.submit(self._send_message(
            conversation.id, conversation.agent_server_url, conversation.upstream_id,
            conversation.workspace, conversation.selected_repository, text,
            retry=conversation.status == "error",
        ))

    def interrupt(self, conversation):
        self._call(self._interrupt(conversation.id, conversation.agent_server_url, conversation.upstream_id))

    def end_session(self, conversation):
        self._call(self._end(conversation.id, conversation.agent_server_url, conversation.upstream_id))

    def resume(self):
        """Restart the relays of all live sessions; called once when a server process starts."""
        missing = missing_llm_settings()
        if missing:
            logger.warning(
                "No LLM is configured: POST /sessions answers 503 until %s is set", ", ".join(missing)
            )
        if self._embedded is not None:
            self._embedded.start()
        # Registered after the embedded server's own exit handler, so it runs first: relays
        # stop before the server does and record no outage at an orderly exit.
        atexit.register(self.shutdown)
        self._loop.submit(self._start_lease_keeper())

    def shutdown(self):
        """Stop relays and the embedded server; for tests and orderly exits."""
        # At interpreter exit the worker threads that run ORM calls are already gone, so the
        # lease keeper stops first instead of failing its rounds.
        keeper = self._lease_keeper
        if keeper is not None:
            self._loop.loop.call_soon_threadsafe(keeper.cancel)
        for relay in list(self._relays.values()):
            relay.stop()
        try:
            self._loop.run(self._stop_all_relays(), timeout=CALL_TIMEOUT_SECONDS)
        except Exception as error:
            # At interpreter exit the worker threads are gone; the leases then expire instead.
            logger.info("Relays stopped without releasing their leases: %s", error)
        finally:
            if self._embedded is not None:
                self._embedded.stop()

    def _call(self, coroutine):
        try:
            return self._loop.run(coroutine, timeout=CALL_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning("A call to the agent server timed out after %s s", CALL_TIMEOUT_SECONDS)
            return None

    # Server selection.

    def _pick_external_server(self):
        """Return the ready agent server with the fewest live sessions."""
        ready = []
        failures = []
        for url in settings.OPENHANDS_AGENT_SERVER_URL:
            url = url.rstrip("/")
            try:
                response = httpx.get(f"{url}/ready", timeout=3)
            except httpx.HTTPError as error:
                failures.append(f"{url} ({type(error).__name__})")
                continue
            if response.status_code == 200:
                ready.append(url)
            else:
                failures.append(f"{url} (HTTP {response.status_code})")

        if not ready:
            raise RuntimeUnavailable(
                f"No agent server is ready: {', '.join(failures)}. Check "
                f"OPENHANDS_AGENT_SERVER_URL and that the servers are running."
            )
        load = live_sessions_per_server(ready)
        # Ties go to the first listed server, so the order of the variable is a preference.
        return min(ready, key=lambda url: load.get(url, 0))

    def _embedded_name(self):
        # Processes that share a database may each run an embedded server in their own data
        # dir, so the name says which one hosts the session.
        digest = hashlib.sha256(str(self._embedded.state_dir.resolve()).encode()).hexdigest()
        return f"{EMBEDDED_PREFIX}{digest[:16]}"

    def _reachable_servers(self):
        if self._embedded is not None:
            return [self._embedded_name()]
        return [url.rstrip("/") for url in settings.OPENHANDS_AGENT_SERVER_URL]

    def _workspace_for(self, conversation):
        if self._embedded is not None:
            return str(self._embedded.state_dir / "workspaces" / conversation.id.hex)
        root = settings.OPENHANDS_AGENT_SERVER_WORKSPACE_ROOT
        return f"{root.rstrip('/')}/{conversation.id.hex}"

    # Event-loop side.

    async def _server(self, server_url):
        """Return (base_url, api_key) of the server that `server_url` names, waiting for an
        embedded server to be ready."""
        if server_url.startswith(EMBEDDED_PREFIX):
            if self._embedded is None:
                raise AgentServerError("This session ran on an embedded agent server, but OPENHANDS_AGENT_SERVER_URL is now set.")
            self._embedded.start()
            ready = await asyncio.to_thread(self._embedded.wait_ready, READY_TIMEOUT_SECONDS)
            if not ready:
                raise AgentServerError(
                    f"The embedded agent server did not become ready: "
                    f"{self._embedded.last_error or 'still starting'} See {self._embedded.log_path}."
                )
            return self._embedded.url, self._embedded.api_key
        return server_url, settings.OPENHANDS_AGENT_SERVER_API_KEY

    async def _client(self, server_url):
        base_url, api_key = await self._server(server_url)
        client = self._clients.get(base_url)
        if client is None:
            client = AgentServerClient(base_url, api_key)
            self._clients[base_url] = client
        return client

    def _lock(self, conversation_id):
        # Serializes start-up, messages, interrupts and the end of one session, so messages
        # reach the agent in the order they were sent.
        return self._locks.setdefault(conversation_id, asyncio.Lock())

    async def _remember_token(self, conversation_id, token):
        self._pending_tokens[conversation_id] = token

    async def _schedule_startup(self, conversation_id, server_url, upstream_id, workspace, repository, initial_message):
        async with self._lock(conversation_id):
            await self._start_upstream(
                conversation_id, server_url, upstream_id, workspace, repository, initial_message
            )

    async def _start_upstream(self, conversation_id, server_url, upstream_id, workspace, repository, message):
        """Create the upstream conversation, clone, send the first message; record failures."""
        try:
            client = await self._client(server_url)
            token = self._pending_tokens.get(conversation_id, "")
            await self._create_upstream(client, conversation_id, upstream_id, workspace, token)
            await self._claim_and_start_relay(
                conversation_id, server_url, upstream_id, apply_first_snapshot=False
            )

            if repository:
                await clone_repository(client, workspace, repository, token, conversation_id)
            self._pending_tokens.pop(conversation_id, None)

            if message:
                self._expect_run(conversation_id)
                await client.send_message(upstream_id, message)
            else:
                await self._store.set_status(conversation_id, "idle", "The agent is ready.")
        except (AgentServerError, CloneFailed) as error:
            self._failed_startups.add(conversation_id)
            await self._fail(conversation_id, str(error), type(error).__name__)
        except Exception as error:
            self._failed_startups.add(conversation_id)
            logger.exception("Session %s could not start", conversation_id)
            await self._fail(conversation_id, f"The session could not start: {error}", "StartFailed")
        else:
            self._failed_startups.discard(conversation_id)

    async def _create_upstream(self, client, conversation_id, upstream_id, workspace, token):
        try:
            await client.get_conversation(upstream_id)
        except AgentServerError as error:
            if error.status_code != 404:
                raise
        else:
            logger.info("Upstream conversation of session %s already exists", conversation_id)
            return
        body = start_conversation_body(upstream_id, workspace, token)
        await client.create_conversation(body)
        logger.info("Created upstream conversation of session %s on %s", conversation_id, client.base_url)

    async def _fail(self, conversation_id, message, code):
        logger.error("Session %s failed: %s", conversation_id, message)
        await self._store.record_error(conversation_id, message, code=code)
        await self._store.set_status(conversation_id, "error", message)

    async def _send_message(self, conversation_id, server_url, upstream_id, workspace, repository, text, retry):
        async with self._lock(conversation_id):
            if retry or conversation_id in self._failed_startups:
                await self._retry(conversation_id, server_url, upstream_id, workspace, repository, text)
                return
            try:
                client = await self._client(server_url)
                self._expect_run(conversation_id)
                await client.send_message(upstream_id, text)
            except AgentServerError as error:
                await self._fail(conversation_id, f"The message could not be sent to the agent: {error}", "SendFailed")
                return
            await self._claim_and_start_relay(conversation_id, server_url, upstream_id)

    async def _retry(self, conversation_id, server_url, upstream_id, workspace, repository, text):
        """Retry a failed session: each start-up step is skipped when already done, so this
        creates the upstream conversation or clones only if that failed before."""
        logger.info("Retrying session %s after an error", conversation_id)
        await self._store.set_status(conversation_id, "starting", "Retrying after an error.")
        await self._start_upstream(conversation_id, server_url, upstream_id, workspace, repository, text)

    async def _interrupt(self, conversation_id, server_url, upstream_id):
        async with self._lock(conversation_id):
            try:
                client = await self._client(server_url)
                await client.interrupt(upstream_id)
            except AgentServerError as error:
                logger.warning("Could not interrupt session %s: %s", conversation_id, error)
                return
            logger.info("Interrupted session %s", conversation_id)

    async def _end(self, conversation_id, server_url, upstream_id):
        async with self._lock(conversation_id):
            self._pending_tokens.pop(conversation_id, None)
            self._failed_startups.discard(conversation_id)
            await self._stop_relay(conversation_id)
            if upstream_id:
                await self._delete_upstream(conversation_id, server_url, upstream_id)
        self._locks.pop(conversation_id, None)

    async def _delete_upstream(self, conversation_id, server_url, upstream_id):
        try:
            client = await self._client(server_url)
        except AgentServerError as error:
            logger.warning("Could not delete the upstream conversation of session %s: %s", conversation_id, error)
            return
        try:
            await client.interrupt(upstream_id)
        except AgentServerError as error:
            # An idle or unknown conversation cannot be interrupted; deleting still works.
            logger.info("Interrupt before ending session %s failed: %s", conversation_id, error)
        try:
            await client.delete_conversation(upstream_id)
        except AgentServerError as error:
            logger.warning("Could not delete the upstream conversation of session %s: %s", conversation_id, error)
            return
        logger.info("Deleted the upstream conversation of session %s", conversation_id)

    # Relays.

    def _start_relay(self, conversation_id, server_url, upstream_id, apply_first_snapshot=True):
        if conversation_id in self._relays:
            return
        relay = EventRelay(
            conversation_id,
            upstream_id,
            server=lambda: self._server(server_url),
            store=self._store,
            llm=describe_llm(),
            apply_first_snapshot=apply_first_snapshot,
        )
        self._relays[conversation_id] = relay
        task = asyncio.get_running_loop().create_task(relay.run(), name=f"relay-{conversation_id}")
        self._relay_tasks[conversation_id] = task
        task.add_done_callback(lambda _: self._forget_relay(conversation_id, relay))

    async def _claim_and_start_relay(self, conversation_id, server_url, upstream_id, **options):
        """Start the relay here unless another process holds the conversation's lease."""
        if conversation_id in self._relays:
            return
        if not await run_orm(leases.claim, conversation_id, settings.RELAY_LEASE_SECONDS):
            logger.debug("Relay of session %s runs in another process", conversation_id)
            return
        self._start_relay(conversation_id, server_url, upstream_id, **options)

    def _expect_run(self, conversation_id):
        relay = self._relays.get(conversation_id)
        if relay is not None:
            relay.expect_run()

    def _forget_relay(self, conversation_id, relay):
        if self._relays.get(conversation_id) is relay:
            del self._relays[conversation_id]
            self._relay_tasks.pop(conversation_id, None)
            # A relay that gave up frees its lease, so a later round may try again.
            asyncio.ensure_future(run_orm(leases.release, conversation_id))

    async def _stop_relay(self, conversation_id):
        relay = self._relays.pop(conversation_id, None)
        task = self._relay_tasks.pop(conversation_id, None)
        if relay is None:
            return
        try:
            await run_orm(leases.release, conversation_id)
        except Exception as error:
            logger.info("Lease of session %s not released (%s); it will expire", conversation_id, error)
        relay.stop()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def _stop_all_relays(self):
        for conversation_id in list(self._relays):
            await self._stop_relay(conversation_id)
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    # Leases: one relay per live conversation across all API server processes.

    async def _start_lease_keeper(self):
        if self._lease_keeper is None or self._lease_keeper.done():
            self._lease_keeper = asyncio.get_running_loop().create_task(
                self._keep_leases(), name="relay-lease-keeper"
            )

    async def _keep_leases(self):
        """Renew this process's leases, drop lost ones and take over orphaned conversations."""
        interval = max(1, settings.RELAY_LEASE_SECONDS / 3)
        logger.info("Relay lease keeper started as %s", leases.PROCESS_IDENTITY)
        while True:
            try:
                await self._renew_leases()
                await self._take_over_orphans()
            except Exception:
                # The database may be briefly unreachable; leases last longer than one round.
                logger.exception("Relay lease round failed; retrying in %s s", interval)
            await asyncio.sleep(interval)

    async def _renew_leases(self):
        running = set(self._relays)
        if not running:
            return
        held = await run_orm(leases.renew, running, settings.RELAY_LEASE_SECONDS)
        for conversation_id in running - held:
            logger.info("Relay of session %s stopped: its lease is gone or it ended", conversation_id)
            await self._stop_relay(conversation_id)

    async def _take_over_orphans(self):
        claimed = await run_orm(
            leases.claim_orphans,
            settings.RELAY_LEASE_SECONDS,
            limit=ORPHANS_PER_ROUND,
            servers=self._reachable_servers(),
        )
        if not claimed:
            return
        targets = await run_orm(_relay_targets, claimed)
        for conversation_id, server_url, upstream_id in targets:
            self._start_relay(conversation_id, server_url, upstream_id)


def live_sessions_per_server(urls):
    from django.db.models import Count

    from sessions.models import Conversation, Status

    rows = (
        Conversation.objects.filter(agent_server_url__in=urls)
        .exclude(status=Status.ENDED)
        .values("agent_server_url")
        .annotate(sessions=Count("pk"))
    )
    return {row["agent_server_url"]: row["sessions"] for row in rows}


def _relay_targets(conversation_ids):
    from sessions.models import Conversation

    return list(
        Conversation.objects.filter(pk__in=conversation_ids).values_list(
            "id", "agent_server_url", "upstream_id"
        )
    )
