import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger(__name__)


class AgentSessionsConfig(AppConfig):
    name = "sessions"
    # django.contrib.sessions, which the admin needs, already owns the label "sessions".
    label = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        if settings.ALLOW_ANY_TOKEN:
            logger.warning(
                "OPENHANDS_API_ALLOW_ANY_TOKEN is on: any non-empty token is accepted. "
                "Use this for local experiments only."
            )
