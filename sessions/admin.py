import contextvars
import uuid

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from sessions import services
from sessions.models import ApiKey, Conversation, Event

EVENTS_PER_PAGE = 50
EVENTS_PAGE_PARAMETER = "events_page"

# The page of events that the conversation being rendered shows; set per request.
events_page_number = contextvars.ContextVar("events_page_number", default="1")

# Keys are managed per user below; the library's own user-less model stays out of the admin.
admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = ("prefix", "name", "user", "created", "expiry_date", "_has_expired", "revoked")
    list_filter = ("revoked", "created", "user")
    search_fields = ("name", "prefix", "user__username")
    autocomplete_fields = ("user",)


@admin.action(description="End selected sessions")
def end_sessions(modeladmin, request, queryset):
    ended = sum(1 for conversation in queryset if services.end_session(conversation))
    modeladmin.message_user(request, f"Ended {ended} session(s).", messages.SUCCESS)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "status",
        "selected_repository",
        "created_at",
        "ended_at",
        "event_count",
    )
    list_filter = ("status", "owner")
    search_fields = ("selected_repository", "owner__username", "title")
    actions = [end_sessions]
    fields = (
        "id",
        "owner",
        "status",
        "title",
        "selected_repository",
        "has_github_token",
        "created_at",
        "updated_at",
        "ended_at",
        "event_count",
        "agent_server_url",
        "upstream_id",
        "workspace",
        "relay_owner",
        "relay_lease_expires_at",
        "events_table",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner")

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        # Ids are shown as 32 hex digits but stored as UUIDs, so match them exactly.
        try:
            conversation_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(pk=conversation_id), may_have_duplicates

    def change_view(self, request, object_id, form_url="", extra_context=None):
        token = events_page_number.set(request.GET.get(EVENTS_PAGE_PARAMETER, "1"))
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            # A TemplateResponse renders after this method returns, when the page number is
            # reset, so render it here while events_table can still read the number.
            if isinstance(response, TemplateResponse):
                response.render()
            return response
        finally:
            events_page_number.reset(token)

    @admin.display(description="events", ordering="last_event_seq")
    def event_count(self, conversation):
        return conversation.last_event_seq

    @admin.display(description="Events")
    def events_table(self, conversation):
        paginator = Paginator(conversation.events.order_by("seq"), EVENTS_PER_PAGE)
        page = paginator.get_page(events_page_number.get())
        return render_to_string(
            "admin/agent_sessions/events_table.html",
            {"page": page, "parameter": EVENTS_PAGE_PARAMETER, "conversation": conversation},
        )


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("conversation", "seq", "type", "source", "short_content", "timestamp")
    list_filter = ("type", "source", "conversation")
    search_fields = ("content",)
    list_select_related = ("conversation",)
    readonly_fields = (
        "conversation",
        "seq",
        "type",
        "source",
        "content",
        "data",
        "payload",
        "upstream_id",
        "timestamp",
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="content")
    def short_content(self, event):
        if len(event.content) <= 80:
            return event.content
        return event.content[:79] + "…"
