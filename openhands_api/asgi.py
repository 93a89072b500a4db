"""ASGI entry point: HTTP through Django, WebSocket through the session consumer."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openhands_api.settings")

# Set Django up before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from sessions.middleware import TokenAuthMiddleware  # noqa: E402
from sessions.routing import websocket_urlpatterns  # noqa: E402
from sessions.runtime.startup import start_runtime  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": TokenAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

start_runtime()
