"""WebSocket authentication with the same API keys and rules as REST.

Scripts send `Authorization: Bearer <key>` (or a bare key). Browsers cannot set headers on a
WebSocket, so they offer two subprotocols instead: `openhands-api` and `token.<key>`; the
consumer echoes only `openhands-api`.
"""
import logging

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from sessions import tokens

logger = logging.getLogger(__name__)

PROTOCOL_NAME = "openhands-api"
TOKEN_PROTOCOL_PREFIX = "token."


def header_value(scope, name):
    for key, value in scope.get("headers", []):
        if key.decode("latin1").lower() == name:
            return value.decode("latin1")
    return None


def token_from_subprotocols(subprotocols):
    for protocol in subprotocols or []:
        if protocol.startswith(TOKEN_PROTOCOL_PREFIX):
            return protocol[len(TOKEN_PROTOCOL_PREFIX):]
    return None


def authenticate(scope):
    """Return the user of the scope's credentials; raise tokens.InvalidToken if there is none."""
    header = header_value(scope, "authorization")
    if header is not None:
        token = tokens.token_from_header(header)
    else:
        token = token_from_subprotocols(scope.get("subprotocols"))
        if not token:
            raise tokens.InvalidToken(
                "Missing API key: send 'Authorization: Bearer <key>', or from a browser offer "
                f"the subprotocols '{PROTOCOL_NAME}' and '{TOKEN_PROTOCOL_PREFIX}<key>'."
            )
    return tokens.owner_for_token(token)


class TokenAuthMiddleware(BaseMiddleware):
    """Put the key's owner in scope["user"], or the reason for rejecting it in scope["auth_error"].

    The consumer closes rejected connections itself after accepting them, because a close before
    the accept reaches the client as HTTP 403 instead of close code 4001.
    """

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        try:
            scope["user"] = await database_sync_to_async(authenticate)(scope)
            scope["auth_error"] = None
        except tokens.InvalidToken as error:
            scope["user"] = AnonymousUser()
            scope["auth_error"] = str(error)
        return await super().__call__(scope, receive, send)
