"""Django settings for openhands-api, read from the environment (see the README's Configuration)."""
import logging
import os
from pathlib import Path

from openhands_api import config

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = Path(config.env_str("OPENHANDS_API_DATA_DIR") or BASE_DIR / ".data").resolve()
# Private: it keeps the secret key, the SQLite database and the agent server's keys.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

SECRET_KEY = config.secret_key(DATA_DIR)
DEBUG = config.env_bool("DEBUG", default=False)
ALLOWED_HOSTS = config.env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# Browser origins allowed to open the WebSocket; clients that send no Origin are always allowed.
WEBSOCKET_ALLOWED_ORIGINS = config.env_url_list("WEBSOCKET_ALLOWED_ORIGINS", ("http", "https"))

INSTALLED_APPS = [
    # daphne before staticfiles, so `manage.py runserver` serves ASGI (HTTP and WebSocket).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework_api_key",
    "sessions.apps.AgentSessionsConfig",
]

MIDDLEWARE = [
    "sessions.http_errors.JsonErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "openhands_api.urls"
ASGI_APPLICATION = "openhands_api.asgi.application"

# Paths accept an optional trailing slash in the URL patterns themselves, so no redirects.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": config.database_config(DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = config.env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the same as the 5 s
                # blocking pop that channels-redis waits on, so idle receives failed at random.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
                # An agent turn can emit hundreds of events in a burst, so a slow socket's
                # channel needs room for them. The database stays the record either way.
                "capacity": 1000,
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "sessions.layers.ThreadSafeInMemoryChannelLayer"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["sessions.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["sessions.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "sessions.http_errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Largest request body accepted, in bytes; a larger one gets a JSON 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = config.env_int("OPENHANDS_API_MAX_BODY_BYTES", 1_048_576, minimum=1024)
# Maximum length of a user message, in characters, over REST and WebSocket alike.
MAX_MESSAGE_CHARS = config.env_int("OPENHANDS_API_MAX_MESSAGE_CHARS", 100_000, minimum=1)
# Largest WebSocket text frame accepted from a client, in bytes.
WEBSOCKET_MAX_FRAME_BYTES = config.env_int(
    "OPENHANDS_API_MAX_FRAME_BYTES", 262_144, minimum=1024
)

# Open mode: any non-empty token is accepted and becomes its own owner. Local experiments only.
ALLOW_ANY_TOKEN = config.env_bool("OPENHANDS_API_ALLOW_ANY_TOKEN", default=False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

LOG_LEVEL = config.env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in logging.getLevelNamesMapping():
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LOG_LEVEL must be a logging level name, got {LOG_LEVEL!r}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django logs every 4xx/5xx with the request; ours log the ids instead.
        "django.request": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},
    },
}

from openhands_api.agent_settings import *  # noqa: E402,F401,F403  (agent runtime settings)

del os
