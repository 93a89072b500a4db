"""DRF authentication by API key in the Authorization header (`Bearer <key>` or `<key>`)."""
import logging

from rest_framework import authentication, exceptions

from sessions import tokens

logger = logging.getLogger(__name__)


class TokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        try:
            token = tokens.token_from_header(header)
            user = tokens.owner_for_token(token)
        except tokens.InvalidToken as error:
            logger.debug("Rejected credentials from %s: %s", request.META.get("REMOTE_ADDR"), error)
            raise exceptions.AuthenticationFailed(str(error)) from None
        return user, token

    def authenticate_header(self, request):
        # DRF returns 401 (not 403) with this challenge when credentials are missing.
        return "Bearer"
