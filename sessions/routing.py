from django.urls import re_path

from sessions.consumers import ConversationConsumer, UnknownPathConsumer

websocket_urlpatterns = [
    re_path(r"^ws/(?P<conversation_id>[^/]+)/?$", ConversationConsumer.as_asgi()),
    # Any other path: close with 4004, as for an unknown session, instead of a handshake error.
    re_path(r"", UnknownPathConsumer.as_asgi()),
]
