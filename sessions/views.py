import logging

from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import JsonResponse
from django.views.decorators.http import require_safe
from rest_framework import exceptions, pagination, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from sessions import services
from sessions.http_errors import error_response
from sessions.models import Conversation, parse_conversation_id
from sessions.runtime import RuntimeUnavailable
from sessions.serializers import (
    EventQuerySerializer,
    MessageSerializer,
    SessionCreateSerializer,
    SessionListQuerySerializer,
    SessionSerializer,
)

logger = logging.getLogger(__name__)


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service unavailable: try again later."


class SessionPagination(pagination.PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class SessionViewSet(viewsets.ViewSet):
    """Sessions of the caller. Another owner's session gets the same 404 as a missing one."""

    lookup_field = "conversation_id"
    lookup_value_regex = "[^/]+"

    def get_conversation(self, conversation_id, live=False):
        pk = parse_conversation_id(conversation_id)
        conversation = None
        if pk is not None:
            conversation = Conversation.objects.filter(pk=pk, owner=self.request.user).first()

        if conversation is None:
            raise exceptions.NotFound(
                f"Session {conversation_id} not found: check the id returned by POST /sessions."
            )
        if live and conversation.is_ended:
            raise exceptions.NotFound(f"Session {conversation.id.hex} has ended.")
        return conversation

    def create(self, request):
        serializer = SessionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        try:
            conversation = services.create_session(request.user, **serializer.validated_data)
        except RuntimeUnavailable as error:
            raise ServiceUnavailable(str(error)) from None

        location = f"/sessions/{conversation.id.hex}"
        return Response(
            {"conversation_id": conversation.id.hex, "status": "ok"},
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )

    def list(self, request):
        query = SessionListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)

        conversations = Conversation.objects.filter(owner=request.user).order_by("-created_at")
        if "status" in query.validated_data:
            conversations = conversations.filter(status=query.validated_data["status"])

        paginator = SessionPagination()
        page = paginator.paginate_queryset(conversations, request, view=self)
        return paginator.get_paginated_response(SessionSerializer(page, many=True).data)

    def retrieve(self, request, conversation_id=None):
        conversation = self.get_conversation(conversation_id)
        return Response(SessionSerializer(conversation).data)

    def destroy(self, request, conversation_id=None):
        conversation = self.get_conversation(conversation_id, live=True)

        if not services.end_session(conversation):
            # Ended by a concurrent request between the lookup and now.
            raise exceptions.NotFound(f"Session {conversation.id.hex} has ended.")
        return Response({"status": "success", "message": "Session ended successfully"})

    @action(detail=True, methods=["get"])
    def events(self, request, conversation_id=None):
        conversation = self.get_conversation(conversation_id)
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]
        limit = query.validated_data["limit"]

        # One extra row shows whether another page follows.
        rows = list(conversation.events.filter(seq__gt=after).order_by("seq")[: limit + 1])
        return Response(
            {"events": [event.to_wire() for event in rows[:limit]], "has_more": len(rows) > limit}
        )

    @action(detail=True, methods=["post"])
    def messages(self, request, conversation_id=None):
        conversation = self.get_conversation(conversation_id, live=True)
        serializer = MessageSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        try:
            event = services.send_message(conversation, serializer.validated_data["content"])
        except services.SessionEnded:
            raise exceptions.NotFound(f"Session {conversation.id.hex} has ended.") from None
        return Response({"status": "accepted", "event_id": event.seq}, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def interrupt(self, request, conversation_id=None):
        conversation = self.get_conversation(conversation_id, live=True)

        try:
            services.interrupt(conversation)
        except services.SessionEnded:
            raise exceptions.NotFound(f"Session {conversation.id.hex} has ended.") from None
        return Response({"status": "accepted"}, status=status.HTTP_202_ACCEPTED)


@require_safe
def healthz(request):
    """Return 200 when a database query succeeds, 503 with the reason otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        logger.warning("Health check failed: database error %s", error)
        return error_response(503, f"Database unavailable: {error}")
    return JsonResponse({"status": "ok", "database": "ok"})
