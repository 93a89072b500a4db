"""An async client for the REST API of an OpenHands agent server (`/api/...`)."""
import logging

import httpx

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-Session-API-Key"


class AgentServerError(Exception):
    """The agent server returned an error status for a request."""

    def __init__(self, message, status_code=None):
        super().__init__(message)
        self.status_code = status_code


class AgentServerUnreachable(AgentServerError):
    """The connection to the agent server failed or timed out."""


class AgentServerClient:
    """REST calls to one agent server. Use one instance per server, from one event loop."""

    def __init__(self, base_url, api_key, timeout=30.0):
        self.base_url = base_url.rstrip("/")
        headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def close(self):
        await self._http.aclose()

    async def request(self, method, path, *, timeout=None, expected=(200, 201), **kwargs):
        """Send a request and return the decoded JSON body; raise AgentServerError otherwise."""
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as error:
            raise AgentServerUnreachable(
                f"The agent server at {self.base_url} could not be reached "
                f"({type(error).__name__}: {error})."
            ) from error

        if response.status_code not in expected:
            raise AgentServerError(
                f"The agent server at {self.base_url} returned HTTP {response.status_code} for "
                f"{method} {path}: {response.text[:500]}",
                status_code=response.status_code,
            )
        if not response.content:
            return None
        return response.json()

    async def is_ready(self):
        try:
            response = await self._http.get("/ready", timeout=3)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def create_conversation(self, body):
        return await self.request("POST", "/api/conversations", json=body)

    async def get_conversation(self, conversation_id):
        return await self.request("GET", f"/api/conversations/{conversation_id}")

    async def send_message(self, conversation_id, text, run=True):
        body = {"role": "user", "content": [{"type": "text", "text": text}], "run": run}
        return await self.request("POST", f"/api/conversations/{conversation_id}/events", json=body)

    async def run(self, conversation_id):
        # 409 means a run is already in progress, which is what the caller wants.
        return await self.request(
            "POST", f"/api/conversations/{conversation_id}/run", expected=(200, 409)
        )

    async def interrupt(self, conversation_id):
        return await self.request("POST", f"/api/conversations/{conversation_id}/interrupt")

    async def delete_conversation(self, conversation_id):
        # 404: already gone, which is the goal.
        return await self.request(
            "DELETE", f"/api/conversations/{conversation_id}", expected=(200, 404)
        )

    async def update_secrets(self, conversation_id, secrets):
        """Store `secrets` (name to value) in the conversation; the agent's shell can read them."""
        body = {
            "secrets": {
                name: {"kind": "StaticSecret", "value": value} for name, value in secrets.items()
            }
        }
        return await self.request("POST", f"/api/conversations/{conversation_id}/secrets", json=body)

    async def search_events(self, conversation_id, **params):
        return await self.request(
            "GET", f"/api/conversations/{conversation_id}/events/search", params=params
        )

    async def execute_bash(self, command, cwd=None, timeout=300):
        """Run `command` on the agent server host and return its BashOutput JSON.

        The agent server stores the command text and its output in its bash event log, so
        neither may contain a secret.
        """
        body = {"command": command, "timeout": timeout}
        if cwd:
            body["cwd"] = cwd
        return await self.request(
            "POST", "/api/bash/execute_bash_command", json=body, timeout=timeout + 30
        )

    async def upload_file(self, path, content):
        """Write `content` (bytes) to the absolute `path` on the agent server host."""
        return await self.request(
            "POST",
            "/api/file/upload",
            params={"path": path},
            files={"file": ("upload", content, "application/octet-stream")},
        )
