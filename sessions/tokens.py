"""Turn an Authorization value into the user who owns it; shared by REST and WebSocket."""
import hashlib
import logging

from django.conf import settings
from django.contrib.auth import get_user_model

from sessions.models import ApiKey

logger = logging.getLogger(__name__)

BEARER = "bearer"
# Usernames of open-mode owners start with this, followed by a hash of the token.
OPEN_MODE_USER_PREFIX = "token-"


class InvalidToken(Exception):
    """The credentials are missing, malformed, unknown, revoked or expired."""


def token_from_header(value):
    """Return the token in `Bearer <token>` or `<token>`; raise InvalidToken if there is none."""
    parts = (value or "").split()
    if not parts:
        raise InvalidToken("Missing API key: send 'Authorization: Bearer <key>'.")

    if parts[0].lower() == BEARER:
        parts = parts[1:]
        if not parts:
            raise InvalidToken("Empty API key after 'Bearer': send 'Authorization: Bearer <key>'.")
    if len(parts) != 1:
        raise InvalidToken("Malformed Authorization header: send 'Authorization: Bearer <key>'.")
    return parts[0]


def owner_for_token(token):
    """Return the user the token belongs to; raise InvalidToken if it is not a valid key."""
    # PostgreSQL rejects NUL in query parameters with a ValueError, and no key contains control
    # characters, so reject them before the lookup.
    if not token.isprintable():
        raise InvalidToken("Malformed API key: it contains control characters.")

    key = matching_key(token)
    if key is None:
        if settings.ALLOW_ANY_TOKEN:
            return open_mode_owner(token)
        raise InvalidToken("Invalid API key: it is unknown.")

    # A real key that is no longer valid stays rejected in open mode too.
    if key.revoked:
        raise InvalidToken(f"API key {key.prefix} has been revoked: ask for a new key.")
    if key.has_expired:
        raise InvalidToken(f"API key {key.prefix} has expired: ask for a new key.")
    if not key.user.is_active:
        raise InvalidToken(f"The owner of API key {key.prefix} is inactive.")
    return key.user


def matching_key(token):
    """Return the stored key, revoked or not, whose hash matches the token, or None."""
    prefix, _, _ = token.partition(".")
    for key in ApiKey.objects.filter(prefix=prefix).select_related("user"):
        if key.is_valid(token):
            return key
    return None


def open_mode_owner(token):
    # A hash, never the token itself, names the user, so each token gets its own sessions and
    # the admin never shows a token.
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    user, created = get_user_model().objects.get_or_create(
        username=f"{OPEN_MODE_USER_PREFIX}{digest}"
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        logger.info("Open mode: created owner %s for a new token", user.username)
    return user
