import re

from django.conf import settings
from rest_framework import serializers

from sessions.models import Conversation, Status

# GitHub's rules: an owner is 1-39 letters, digits or single hyphens, not starting or ending with
# a hyphen. A repository name is 1-100 letters, digits, '.', '-' or '_', and not '.' or '..'.
REPOSITORY_PATTERN = re.compile(
    r"^(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38})/(?P<name>[A-Za-z0-9._-]{1,100})$"
)
MAX_GITHUB_TOKEN_CHARS = 1000


class StrictCharField(serializers.CharField):
    """A CharField that rejects numbers and booleans instead of turning them into text."""

    default_error_messages = {"not_a_string": "Must be a string, got {type}."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string", type=json_type_name(data))
        return super().to_internal_value(data)


def json_type_name(value):
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


class RejectUnknownFieldsMixin:
    """Reject fields the serializer does not define, reported with the other field errors."""

    def to_internal_value(self, data):
        unknown = {}
        if isinstance(data, dict):
            known = ", ".join(self.fields)
            unknown = {name: [f"Unknown field. Known fields: {known}."] for name in sorted(set(data) - set(self.fields))}

        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            if unknown and isinstance(error.detail, dict):
                raise serializers.ValidationError({**error.detail, **unknown}) from None
            raise

        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def message_field(**kwargs):
    return StrictCharField(
        max_length=settings.MAX_MESSAGE_CHARS,
        allow_blank=False,
        trim_whitespace=False,
        error_messages={"blank": "Must not be blank."},
        **kwargs,
    )


class SessionCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    github_token = StrictCharField(
        required=False, allow_null=True, allow_blank=True, max_length=MAX_GITHUB_TOKEN_CHARS
    )
    selected_repository = StrictCharField(required=False, allow_null=True, allow_blank=True)
    initial_message = message_field(required=False, allow_null=True)

    def validate_github_token(self, value):
        if value and any(character.isspace() for character in value):
            raise serializers.ValidationError("Must not contain whitespace.")
        return value or ""

    def validate_selected_repository(self, value):
        if not value:
            return ""
        match = REPOSITORY_PATTERN.match(value)
        if not match or match["name"] in {".", ".."}:
            raise serializers.ValidationError(
                "Must be 'owner/name' as on GitHub, for example 'octocat/hello-world'."
            )
        return value

    def validate_initial_message(self, value):
        if value is not None and not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value


class MessageSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    content = message_field()

    def validate_content(self, value):
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value


class SessionSerializer(serializers.ModelSerializer):
    conversation_id = serializers.SerializerMethodField()
    event_count = serializers.IntegerField(source="last_event_seq")
    last_event_id = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = [
            "conversation_id",
            "status",
            "selected_repository",
            "title",
            "created_at",
            "updated_at",
            "ended_at",
            "event_count",
            "last_event_id",
        ]

    def get_conversation_id(self, conversation):
        return conversation.id.hex

    def get_last_event_id(self, conversation):
        return conversation.last_event_seq or None


class SessionListQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100)


class EventQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    after = serializers.IntegerField(required=False, min_value=0, default=0)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)
