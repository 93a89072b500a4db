"""Settings for the test suite: the real settings, with a throwaway data dir and no agent.

Tests that run real agents switch the runtime on in the processes they start.
"""
import os
import tempfile

os.environ.setdefault("OPENHANDS_API_DATA_DIR", tempfile.mkdtemp(prefix="openhands-api-tests-"))
os.environ.setdefault("OPENHANDS_API_AGENT_RUNTIME", "disabled")

from openhands_api.settings import *  # noqa: E402,F403

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not the in-memory default, so that server processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
