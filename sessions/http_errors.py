"""Give every API error the same JSON shape, whether DRF or Django produced it.

The shape is `{"error": true, "message": ..., "status_code": ...}`, plus `"errors"` with the
messages per field for validation errors. No HTML page and no traceback reaches an API client.
"""
import logging
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

# Paths served as HTML for people, whose error pages stay as Django renders them.
HTML_PATH_PREFIXES = ("/admin/", "/static/")

DEFAULT_MESSAGES = {
    400: "Bad request: check the request body and parameters.",
    401: "Authentication required: send 'Authorization: Bearer <key>'.",
    403: "Forbidden.",
    404: "Not found: check the URL and the id.",
    405: "Method not allowed on this URL.",
    413: "Request body too large.",
    415: "Unsupported media type: send a JSON body with 'Content-Type: application/json'.",
    500: "Internal server error: the failure was logged; try again later.",
    503: "Service unavailable: try again later.",
}


def error_response(status_code, message=None, errors=None, headers=None):
    body = {
        "error": True,
        "message": message or DEFAULT_MESSAGES.get(status_code) or HTTPStatus(status_code).phrase,
        "status_code": status_code,
    }
    if errors:
        body["errors"] = errors
    return JsonResponse(body, status=status_code, headers=headers)


def api_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: DRF's own handling, then our JSON shape."""
    if isinstance(exc, RequestDataTooBig):
        exc = exceptions.APIException(body_too_large_message())
        exc.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE

    response = exception_handler(exc, context)
    if response is None:
        # Not an API exception: the middleware logs it and returns 500.
        return None

    errors = None
    if isinstance(exc, exceptions.ValidationError):
        errors = normalize_errors(exc.detail)
        message = summarize_errors(errors)
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        message = f"{exc.detail} Send a JSON body with 'Content-Type: application/json'."
    else:
        message = str(getattr(exc, "detail", "")) or None

    reply = error_response(response.status_code, message, errors)
    for name in ("WWW-Authenticate", "Allow", "Retry-After", "Location"):
        if name in response:
            reply[name] = response[name]
    return reply


def normalize_errors(detail):
    """Return `{field: [messages]}`; errors not tied to a field go under `non_field_errors`."""
    if isinstance(detail, dict):
        return {field: flatten_messages(messages) for field, messages in detail.items()}
    return {"non_field_errors": flatten_messages(detail)}


def flatten_messages(messages):
    if isinstance(messages, dict):
        return [f"{key}: {text}" for key, value in messages.items() for text in flatten_messages(value)]
    if isinstance(messages, (list, tuple)):
        return [text for message in messages for text in flatten_messages(message)]
    return [str(messages)]


def summarize_errors(errors):
    parts = []
    for field, messages in errors.items():
        prefix = "" if field == "non_field_errors" else f"{field}: "
        parts.append(prefix + " ".join(messages))
    return "Invalid request. " + "; ".join(parts)


def body_too_large_message():
    return (
        f"Request body too large: the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    )


def is_api_path(path):
    return not path.startswith(HTML_PATH_PREFIXES)


class JsonErrorMiddleware:
    """Turn Django's own error responses and unhandled exceptions on API paths into JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path) and self.body_too_large(request):
            return error_response(413, body_too_large_message())

        response = self.get_response(request)

        if not is_api_path(request.path) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        # An error page rendered by Django (404 for an unknown URL, CSRF 403, ...).
        return error_response(response.status_code, headers=self.kept_headers(response))

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        if isinstance(exception, RequestDataTooBig):
            return error_response(413, body_too_large_message())
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(500)

    @staticmethod
    def body_too_large(request):
        # DRF reads the body as a stream, which skips Django's DATA_UPLOAD_MAX_MEMORY_SIZE check.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return False
        return length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    @staticmethod
    def kept_headers(response):
        return {name: response[name] for name in ("Allow", "WWW-Authenticate") if name in response}


# Django calls these for errors raised outside DRF views on every path, so the admin's pages
# get Django's own HTML error pages here.
def handler404(request, exception=None):
    if not is_api_path(request.path):
        return defaults.page_not_found(request, exception)
    return error_response(404)


def handler500(request):
    if not is_api_path(request.path):
        return defaults.server_error(request)
    return error_response(500)


def handler400(request, exception=None):
    if not is_api_path(request.path):
        return defaults.bad_request(request, exception)
    return error_response(400)


def handler403(request, exception=None):
    if not is_api_path(request.path):
        return defaults.permission_denied(request, exception)
    return error_response(403)
