from django.urls import re_path
from rest_framework.routers import SimpleRouter

from sessions import views


class OptionalSlashRouter(SimpleRouter):
    """A router whose paths match with or without a trailing slash, for every method."""

    def __init__(self):
        super().__init__()
        # Matching both forms avoids APPEND_SLASH redirects, which clients drop bodies on.
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("sessions", views.SessionViewSet, basename="session")

urlpatterns = [
    re_path(r"^healthz/?$", views.healthz, name="healthz"),
    *router.urls,
]
