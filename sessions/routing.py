from django.urls import re_path

from sessions.consumers import ConversationConsumer

websocket_urlpatterns = [
    re_path(r"^ws/(?P<conversation_id>[^/]+)/?$", ConversationConsumer.as_asgi()),
]
